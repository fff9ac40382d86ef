"""How the documentation's commands are read and their shown output matched
(tests/helpers/doc_commands.py): what the docs test runs must be what a reader sees."""

from __future__ import annotations

import pytest

from tests.helpers.doc_commands import (
    DocFormatError,
    fenced_blocks,
    missing_lines,
    parse,
    split_comment,
    unfenced_lines,
)

PAGE = """# A page

```console
$ chronotick-ntp-server --listen 127.0.0.1:11123 &
serving the system clock on 127.0.0.1:11123
$ chronotick-client --shm-name nosuch time    # exit code 1
chronotick-client: no ChronoTick segment at /dev/shm/nosuch
$ echo "a # not a comment" \\
    | tr a b
$ python - <<'EOF'
print("$ not a command")

EOF
done
```

```sh
$ never read: not a console block
```

1. In a list:

   ```console
   $ echo indented
   indented
   ```

Inline ```` ```console ```` is no fence.
"""


def test_commands_their_output_and_their_marks() -> None:
    commands = parse(PAGE, "page.md")
    assert [c.first_line for c in commands] == [
        "chronotick-ntp-server --listen 127.0.0.1:11123 &",
        "chronotick-client --shm-name nosuch time    # exit code 1",
        'echo "a # not a comment" \\',
        "python - <<'EOF'",
        "echo indented",
    ]
    server, client, echo, heredoc, indented = commands
    assert server.background and server.expected == ("serving the system clock on 127.0.0.1:11123",)
    assert server.code.endswith("&") and server.exit_code == 0
    assert not client.background and client.exit_code == 1
    assert echo.text == 'echo "a # not a comment" \\\n    | tr a b' and echo.exit_code == 0
    assert heredoc.text.splitlines()[1:] == ['print("$ not a command")', "", "EOF"]
    assert heredoc.expected == ("done",)
    assert indented.expected == ("indented",) and indented.line == 24
    assert client.line == 6 and client.where == "page.md:6"


def test_comments_start_at_a_word_outside_quotes() -> None:
    assert split_comment("echo 'a # b' # c") == ("echo 'a # b' ", "# c")
    assert split_comment("echo a#b") == ("echo a#b", "")
    assert split_comment('echo "x \\" # y"') == ('echo "x \\" # y"', "")


@pytest.mark.parametrize(
    "text",
    [
        "```console\njust output\n```\n",
        "```console\n```\n",
        "```console\n$ echo a \\\n```\n",
        "```console\n$ cat <<EOF\nnever closed\n```\n",
    ],
)
def test_blocks_it_cannot_read_are_errors(text: str) -> None:
    with pytest.raises(DocFormatError):
        parse(text, "bad.md")


def test_fences_follow_commonmark() -> None:
    infos = [info for info, _, _ in fenced_blocks(PAGE)]
    assert infos == ["console", "sh", "console"]
    outside = [line for _, line in unfenced_lines(PAGE)]
    assert "Inline ```` ```console ```` is no fence." in outside
    assert "$ never read: not a console block" not in outside


@pytest.mark.parametrize(
    ("shown", "printed"),
    [
        (["offset +0.185 ms  σ 0.419"], ["offset -0.013 ms  σ 12"]),
        (["a  b   c"], ["a b c"]),
        (["x ... z"], ["x anything at all z"]),
        (["c  used   -48.3 µs  241 µs  1.0 s"], ["c  used   +986 ns  1.2 ms  950 ms"]),
        (["first", "...", "third"], ["first", "second", "third", "fourth"]),
        (["2026-11-26 04:54:30,102 INFO up"], ["2027-01-02 23:59:59,999 INFO up"]),
        ([], ["whatever"]),
    ],
)
def test_shown_output_matches(shown: list[str], printed: list[str]) -> None:
    assert missing_lines(tuple(shown), printed) == []


@pytest.mark.parametrize(
    ("shown", "printed", "missing"),
    [
        (["status SYNCHRONIZED"], ["status UNKNOWN"], ["status SYNCHRONIZED"]),
        (["b", "a"], ["a", "b"], ["a"]),  # in order
        (["a"], ["a b"], ["a"]),  # whole lines
        (["peer b used"], ["peer c used"], ["peer b used"]),
        (["drift 5 ppm"], ["drift 5 ms"], ["drift 5 ppm"]),  # only a duration's unit varies
        (["3 samples"], ["3 servers"], ["3 samples"]),
        (["x"], [], ["x"]),
    ],
)
def test_shown_output_that_was_not_printed_is_missing(
    shown: list[str], printed: list[str], missing: list[str]
) -> None:
    assert missing_lines(tuple(shown), printed) == missing
