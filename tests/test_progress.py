from ffwatt.hardware.progress import parse_progress

SAMPLE = """frame=43
fps=0.00
stream_0_0_q=28.0
bitrate=N/A
total_size=N/A
out_time_us=-9223372036854775807
out_time_ms=-9223372036854775807
out_time=-577014:32:22.775808
dup_frames=0
drop_frames=0
speed=N/A
progress=continue
frame=150
fps=92.51
stream_0_0_q=-1.0
bitrate= 533.6kbits/s
total_size=329040
out_time_us=4933333
out_time_ms=4933333
out_time=00:00:04.933333
dup_frames=2
drop_frames=1
speed=3.07x
progress=end
"""


def test_blocks_parse_with_missing_values_as_none():
    first, last = list(parse_progress(SAMPLE.splitlines()))
    assert first.frame == 43 and first.bitrate_kbps is None and first.speed is None
    assert first.out_time_s is None and not first.done
    assert last.frame == 150 and last.fps == 92.51 and last.bitrate_kbps == 533.6
    assert last.total_size_bytes == 329040 and abs(last.out_time_s - 4.933333) < 1e-9
    assert (last.dup_frames, last.drop_frames, last.speed, last.done) == (2, 1, 3.07, True)


def test_partial_block_yields_nothing():
    assert list(parse_progress(["frame=1", "fps=2"])) == []
