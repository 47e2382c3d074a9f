import io

from rich.console import Console

from ragkit.progress import ProgressLines, progress_display


def test_a_log_gets_one_line_per_question_with_the_time_left():
    out = io.StringIO()
    console = Console(file=out, width=200)
    assert not console.is_terminal
    times = iter([0.0, 30.0, 60.0, 100.0])
    lines = ProgressLines(console, clock=lambda: next(times))
    for done in (2, 3, 3, 4, 6):  # resumed with 2 on disk; a repeated count prints nothing
        lines("full_context", done, 6)
    assert out.getvalue().splitlines() == [
        "full_context: 2/6 questions (2 already on disk)",
        "full_context: 3/6 questions (30s, ~1m30s left)",
        "full_context: 4/6 questions (1m00s, ~1m00s left)",
        "full_context: 6/6 questions (1m40s, ~0s left)",
    ]
    with progress_display(console) as hook:
        assert isinstance(hook, ProgressLines)
