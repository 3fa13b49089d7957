"""lavish.media: decode video files into model inputs (spec 2.2, 2.3), and write test videos.

Lowest layer: imports nothing from the rest of lavish except :mod:`lavish.errors`.
"""

from lavish.media.audio import AUDIO_FRONTENDS, AudioFrontend, get_frontend, segment_spectrograms
from lavish.media.decode import Clip, MediaInfo, decode_clip, probe, read_audio, read_frames, segment_times
from lavish.media.fbank import kaldi_fbank
from lavish.media.frames import IMAGENET_MEAN, IMAGENET_STD, normalize_frames
from lavish.media.writer import write_video

__all__ = [
    "AUDIO_FRONTENDS",
    "AudioFrontend",
    "Clip",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MediaInfo",
    "decode_clip",
    "get_frontend",
    "kaldi_fbank",
    "normalize_frames",
    "probe",
    "read_audio",
    "read_frames",
    "segment_spectrograms",
    "segment_times",
    "write_video",
]
