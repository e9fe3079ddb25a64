"""Workflow commands, environment files, masking and shells."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from executors.github.commands import (
    CommandStream,
    EnvFileError,
    parse_command,
    parse_env_file,
    parse_path_file,
)
from executors.github.errors import WorkflowInvalid
from executors.github.masking import Masker
from executors.github.output import StepOutput
from executors.github.shells import shell_command


def test_commands_are_parsed_and_unescaped() -> None:
    command = parse_command("::error file=app.js,line=10,title=a%3Ab::bad%0Athing%25")
    assert command is not None
    assert command.name == "error"
    assert command.properties == {"file": "app.js", "line": "10", "title": "a:b"}
    assert command.data == "bad\nthing%"
    assert parse_command("not a command") is None
    assert parse_command("::endgroup::") is not None


def test_the_stream_collects_effects_and_honours_stop_commands() -> None:
    stream = CommandStream(allow_unsecure=False)
    for line in (
        "::set-output name=a::1",
        "::add-mask::hidden",
        "::set-env name=X::1",
        "::stop-commands::tok",
        "::set-output name=b::2",
        "::tok::",
        "::save-state name=s::v",
        "::warning::careful",
    ):
        stream.feed(line)
    effects = stream.effects
    assert effects.outputs == {"a": "1"}
    assert effects.masks == ["hidden"] and effects.state == {"s": "v"}
    assert effects.env == {}
    assert [a["level"] for a in effects.annotations] == ["error", "warning"]
    unsecure = CommandStream(allow_unsecure=True)
    unsecure.feed("::set-env name=X::1")
    unsecure.feed("::add-path::/opt/bin")
    assert unsecure.effects.env == {"X": "1"} and unsecure.effects.paths == ["/opt/bin"]


def test_env_files_single_lines_and_heredocs() -> None:
    text = "A=1\nB=x=y\nC<<EOF\nline1\nline2\nEOF\n\ntest<<World\nx=Thats really Weird\nWorld\n"
    assert parse_env_file(text) == {
        "A": "1",
        "B": "x=y",
        "C": "line1\nline2",
        "test": "x=Thats really Weird",
    }
    with pytest.raises(EnvFileError, match="no closing delimiter"):
        parse_env_file("K<<END\nnever closed\n")
    with pytest.raises(EnvFileError, match="invalid line"):
        parse_env_file("no equals sign\n")
    assert parse_path_file("/a\n\n /b \n") == ["/a", "/b"]


@given(
    st.dictionaries(
        st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True),
        st.text(alphabet=st.characters(blacklist_characters="\r\n"), max_size=20),
        max_size=5,
    )
)
def test_heredocs_round_trip(values: dict[str, str]) -> None:
    text = "".join(f"{k}<<DELIM_X\n{val}\nDELIM_X\n" for k, val in values.items())
    assert parse_env_file(text) == values


def test_masking_longest_first_and_lines_of_multiline_secrets() -> None:
    masker = Masker(["abc", "abcdef", "one\ntwo"])
    assert masker.mask("xabcdefx abc") == "x***x ***"
    assert masker.mask("one and two") == "*** and ***"
    assert masker.mask_tree({"a": ["abc", 1]}) == {"a": ["***", 1]}
    assert not Masker([""])


def test_output_is_masked_line_by_line_across_chunks() -> None:
    written: list[tuple[str, bytes]] = []

    async def log(channel: str, data: bytes) -> None:
        written.append((channel, data))

    async def main() -> StepOutput:
        masker = Masker(["secret"])
        out = StepOutput(log, masker, CommandStream(allow_unsecure=False), 1024)
        await out.write("stdout", b"the sec")
        await out.write("stdout", b"ret is here\n::add-mask::new-value\nnew-value and more")
        await out.flush()
        return out

    out = asyncio.run(main())
    text = b"".join(data for _, data in written).decode()
    assert text == "the *** is here\n::add-mask::***\n*** and more"
    assert out.tail.text() == text


def test_shells() -> None:
    bash = shell_command("bash", "/t/1.sh", has_bash=True)
    assert bash.argv == ("bash", "--noprofile", "--norc", "-eo", "pipefail", "/t/1.sh")
    assert shell_command(None, "/t/1.sh", has_bash=True).argv == ("bash", "-e", "/t/1.sh")
    assert shell_command(None, "/t/1.sh", has_bash=False).argv == ("sh", "-e", "/t/1.sh")
    assert shell_command("sh", "/t/1.sh", has_bash=True).argv == ("sh", "-e", "/t/1.sh")
    assert shell_command("python", "/t/1.py", has_bash=True).argv == ("python3", "/t/1.py")
    assert shell_command("cp {0} action.yml", "/t/1", has_bash=True).argv == (
        "cp",
        "/t/1",
        "action.yml",
    )
    with pytest.raises(WorkflowInvalid, match="not supported"):
        shell_command("fish", "/t/1", has_bash=True)
