"""Will it fit? The memory a super-resolution needs, checked against what the machine has, before any work.

A factor of 100000 or a target spacing of 1e-9 mm asks for an output larger than any machine's
memory; without this check the run grows until the operating system kills it or numpy raises
mid-way. The estimate is deliberately simple (the pipeline holds a few float32 copies of the
output at its peak, a learned method also its network's activations for one batch) and the limit
is the memory available now: MemAvailable on Linux (capped by a cgroup limit when one is set: the
usual case in containers and on clusters, which psutil does not see), psutil elsewhere when it is
installed. When neither can tell, nothing is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from . import LatentSRError

#: Float32 copies of the output alive at the pipeline's peak (result, scaled back, reordered,
#: converted to the pixel type and handed to the file writer): 4.1 measured (linear and Lanczos,
#: a 256x256x553 output, peak RSS), plus headroom.
OUTPUT_COPIES = 5
#: Bytes of network activations per input voxel of one batch, learned methods (rough, float32).
LEARNED_BYTES_PER_VOXEL = 4 * 128


def available_bytes() -> int | None:
    """Memory this process can still use, in bytes, or None when the system does not say."""
    found = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        pass
    if found is None:
        try:
            import psutil
            found = int(psutil.virtual_memory().available)
        except Exception:  # not installed, or no answer on this platform
            return None
    cgroup = _cgroup_room()
    return found if cgroup is None else min(found, cgroup)


def _cgroup_room() -> int | None:
    """Limit minus usage of this process's memory cgroup (v2, then v1), or None without a limit."""
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit_text = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit_text == "max" or not limit_text.isdigit() or int(limit_text) >= 1 << 60:
            return None
        return max(int(limit_text) - usage, 0)
    return None


def output_shape(shape: Sequence[int], factor: int, axis: int = 0) -> tuple[int, ...]:
    """(T, Z, Y, X) of the result of upsampling (T, Z, Y, X) ``shape`` by ``factor`` along ``axis`` (Z=0)."""
    out = list(int(s) for s in shape)
    out[1 + axis] = (out[1 + axis] - 1) * int(factor) + 1
    return tuple(out)


def estimate_bytes(shape: Sequence[int], factor: int, axis: int = 0, learned: bool = False,
                   batch_slices: int = 16) -> int:
    """Rough peak memory (bytes) of super-resolving a (T, Z, Y, X) ``shape`` by ``factor``."""
    t, z, y, x = output_shape(shape, factor, axis)
    peak = OUTPUT_COPIES * 4 * t * z * y * x
    if learned:
        plane = [n for i, n in enumerate(shape[1:]) if i != axis]
        peak += LEARNED_BYTES_PER_VOXEL * max(int(batch_slices), 1) * plane[0] * plane[1]
    return peak


def _size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"


def check_output_fits(shape: Sequence[int], factor: int, axis: int = 0, learned: bool = False,
                      batch_slices: int = 16, available: int | None = None) -> int:
    """Refuse, before any work, a run whose estimated peak memory exceeds what is available.

    Args:
        shape: the input's (T, Z, Y, X) array shape.
        factor: the upsampling factor along ``axis`` (an index into Z, Y, X).
        learned: add a learned method's network activations for one batch of ``batch_slices``.
        available: bytes to compare against (default: :func:`available_bytes`).

    Returns:
        The estimate in bytes.

    Raises:
        LatentSRError: naming the output size, the estimate, the limit and the largest factor that fits.
    """
    need = estimate_bytes(shape, factor, axis, learned, batch_slices)
    available = available_bytes() if available is None else available
    if available is None or need <= available:
        return need
    t, z, y, x = output_shape(shape, factor, axis)
    fixed = estimate_bytes(shape, 0, axis, learned, batch_slices)  # the part that does not grow with k
    per_factor = estimate_bytes(shape, 1, axis, learned, batch_slices) - fixed  # exact: linear in k
    largest = int((available - fixed) // per_factor) if per_factor > 0 else 0
    hint = (f"the largest factor that fits is about {largest}" if largest >= 2
            else "no factor above 1 fits; free memory or crop the image")
    raise LatentSRError(f"factor {factor} would make a {x}x{y}x{z}" + (f"x{t}" if t > 1 else "")
                        + f" output needing about {_size(need)} of memory, more than the "
                        f"{_size(available)} available: {hint} (use a smaller --factor or a larger --spacing)")
