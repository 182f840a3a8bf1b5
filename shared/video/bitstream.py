"""Just enough H.264/HEVC bitstream parsing to tell a clean random-access point (an IDR
picture) from a keyframe that still leans on earlier pictures (an open-GOP I frame)."""

from __future__ import annotations

from collections.abc import Iterator


def nal_types(data: bytes, hevc: bool) -> Iterator[int]:
    """NAL unit types of an H.264/HEVC access unit, length-prefixed (mp4/mkv) or Annex B."""
    if data[:3] == b"\x00\x00\x01" or data[:4] == b"\x00\x00\x00\x01":
        i = 0
        while True:
            i = data.find(b"\x00\x00\x01", i)
            if i < 0 or i + 3 >= len(data):
                return
            b = data[i + 3]
            yield (b >> 1) & 0x3F if hevc else b & 0x1F
            i += 3
    i = 0
    while i + 4 < len(data):
        n = int.from_bytes(data[i:i + 4], "big")
        b = data[i + 4]
        yield (b >> 1) & 0x3F if hevc else b & 0x1F
        i += 4 + n


def is_clean_random_access(codec: str, data: bytes) -> bool:
    """True when decoding may start at this keyframe with no reference to earlier frames."""
    if codec == "h264":
        return 5 in set(nal_types(data, hevc=False))  # IDR
    if codec == "hevc":
        return bool({19, 20} & set(nal_types(data, hevc=True)))  # IDR_W_RADL, IDR_N_LP
    return True  # vp8/vp9/av1 key frames, intra-only codecs: a keyframe resets references
