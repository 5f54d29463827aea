"""The curl session of docs/api.md works as written against a real server (`hil serve`):
run with bash and curl where they exist, and replayed request by request with httpx (the
curl commands parsed from the page) everywhere, so CI needs no curl."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import httpx
import pytest

from tests.conftest import REPO
from tests.hil.api.conftest import write_config
from tests.hil.api.servers import TOKEN, ServeProcess

DOC = REPO / "docs" / "api.md"
DOC_URL = "http://127.0.0.1:8000"


def session_block() -> str:
    section = DOC.read_text().split("## A curl session", 1)[1]
    return section.split("```bash\n", 1)[1].split("\n```", 1)[0]


def commands(block: str) -> list[str]:
    """The block's commands, continuation lines joined, comments and blank lines left out."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [
        line.strip() for line in joined.splitlines() if line.strip() and not line.startswith("#")
    ]


class Replay:
    """Runs the session's commands the way bash would, with httpx for curl: variables,
    ``$(python3 -c ...)``, ``$(curl ... | field NAME)`` and curl's -s -f -N -X -H -d."""

    def __init__(self, env: dict[str, str], http: httpx.Client) -> None:
        self.env = env
        self.http = http
        self.outputs: list[str] = []

    def run(self, command: str) -> str:
        if re.match(r"^\w+\(\) \{", command):  # the `field` helper: done by json below
            return ""
        assignment = re.match(r"^(\w+)=(.*)$", command)
        if assignment:
            self.env[assignment[1]] = self.value(assignment[2])
            return ""
        output = self.curl(self.words(command))
        self.outputs.append(output)
        return output

    def value(self, text: str) -> str:
        if not (text.startswith("$(") and text.endswith(")")):
            (word,) = self.words(text)
            return word
        inner = text[2:-1]
        if "|" in inner:
            command, pipe = inner.rsplit("|", 1)
            helper, key = self.words(pipe)
            assert helper == "field"
            return str(json.loads(self.run(command.strip()))[key])
        program, flag, code = self.words(inner)
        assert (program, flag) == ("python3", "-c")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        return done.stdout.strip()

    def words(self, text: str) -> list[str]:
        out: list[str] = []
        word: list[str] = []
        quote, started, i = "", False, 0
        while i < len(text):
            c = text[i]
            if quote == "'":
                if c == "'":
                    quote = ""
                else:
                    word.append(c)
            elif c == "$" and (quote == '"' or not quote):
                name = re.match(r"\$(?:\{(\w+)\}|(\w+))", text[i:])
                assert name, text[i:]
                word.append(self.env[name[1] or name[2]])
                started = True
                i += len(name[0])
                continue
            elif quote == '"':
                if c == '"':
                    quote = ""
                elif c == "\\" and text[i + 1] in '"\\$':
                    word.append(text[i + 1])
                    i += 1
                else:
                    word.append(c)
            elif c in "'\"":
                quote, started = c, True
            elif c.isspace():
                if word or started:
                    out.append("".join(word))
                word, started = [], False
            else:
                word.append(c)
            i += 1
        if word or started:
            out.append("".join(word))
        return out

    def curl(self, words: list[str]) -> str:
        assert words[0] == "curl", words
        method, headers, data, url, fail = None, {}, None, None, False
        args = iter(words[1:])
        for arg in args:
            if arg == "-X":
                method = next(args)
            elif arg == "-H":
                name, _, value = next(args).partition(":")
                headers[name.strip()] = value.strip()
            elif arg == "-d":
                data = next(args)
            elif re.fullmatch(r"-[sfN]+", arg):
                fail = fail or "f" in arg
            else:
                assert url is None and arg.startswith("http"), arg
                url = arg
        method = method or ("POST" if data is not None else "GET")
        response = self.http.request(method, url, headers=headers, content=data)
        if fail:
            assert response.status_code < 400, (words, response.text)
        return response.text


def check_outputs(output: str) -> None:
    assert '"status":"ok"' in output  # health
    assert '"field":"amplitude_v"' in output and "outside [0.1, 3] V" in output
    assert '"total_pulses":5' in output
    assert "event: started" in output and "event: epoch" in output
    ended = re.search(r"event: ended\ndata: (.*)\n", output)
    assert ended and json.loads(ended[1])["status"] == "finished"
    assert '"confirmed":true' in output and '"run_stopped":null' in output


@pytest.fixture
def server(tmp_path):
    # the page's bench, sim-digits, on fewer samples so that the run takes a second
    config = write_config(tmp_path / "sim-digits.yaml")
    with ServeProcess(config, tmp_path / "data") as serve:
        yield serve


def test_the_block_is_what_the_replay_understands():
    lines = commands(session_block())
    assert sum(line.startswith(("curl", "LEASE=$(curl", "RUN=$(curl")) for line in lines) == 10
    assert any("/safe-state" in line for line in lines)


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("bash")), reason="needs curl, bash")
def test_the_session_runs_as_written_with_curl(server):
    block = session_block().replace(DOC_URL, server.url)
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block],
        env={**server.env, "HIL_API_TOKEN": TOKEN},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    check_outputs(done.stdout)


def test_the_session_replayed_with_httpx(server):
    with httpx.Client(timeout=60) as http:
        replay = Replay({"HIL_API_TOKEN": TOKEN}, http)
        for command in commands(session_block().replace(DOC_URL, server.url)):
            replay.run(command)
    check_outputs("\n".join(replay.outputs))
