"""Video plumbing with exact frames and timestamps, one room per job.

No Azure imports: the Function app and the Batch nodes (scoring/) both use this package.

- ``common``: the error type, the bundled ffmpeg, opening a path or a blob with libav;
- ``probing`` (with ``bitstream``, the H.264/HEVC parsing it needs): streams, frame count and
  every frame's timestamp, read from packets without decoding;
- ``splitting``: the chunk plan and the cut, by stream copy or by re-encode, with PyAV;
- ``timestamps``: reading timestamps, mapping re-encoded packets back onto them, ``restamp``;
- ``stitching`` (with ``served``, which lends a blob to the ffmpeg CLI): the output video;
- ``preview``: the before/after JPEG;
- ``cli``: ``python -m shared.video probe clip.mp4``.

Two tools, each for what it is best at: PyAV (libav in-process) for everything at packet or
frame level, and the ffmpeg CLI of imageio-ffmpeg for the stitch's final stream copy of the
original's other streams (chapters, metadata and attachments included).

Frame identity is by presentation order: frame *i* of a video is the *i*-th frame its decoder
shows. A chunk covers frames ``[start, start + n)``; the stitch gives stylized frame *i* the
original frame *i*'s timestamp.
"""

from shared.video.cli import main
from shared.video.common import Source, VideoError, ffmpeg_exe, run_ffmpeg
from shared.video.preview import first_frame_image, make_preview
from shared.video.probing import Probe, StreamInfo, probe, probe_header
from shared.video.splitting import Chunk, plan_chunks, split
from shared.video.stitching import StitchResult, output_format, stitch
from shared.video.timestamps import frame_timestamps, restamp, retime_packets

__all__ = [
    "Chunk", "Probe", "Source", "StitchResult", "StreamInfo", "VideoError",
    "ffmpeg_exe", "first_frame_image", "frame_timestamps", "main", "make_preview",
    "output_format", "plan_chunks", "probe", "probe_header", "restamp", "retime_packets",
    "run_ffmpeg", "split", "stitch",
]
