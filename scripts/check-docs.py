#!/usr/bin/env python3
"""Runs the shell examples of the documentation against a fresh jimd, so a wrong path or command
fails the build.

    scripts/check-docs.py [--build DIR] [--root DIR] [--timeout S] [-v|-vv] [FILE.md ...]

FILE.md defaults to README.md, web/README.md and protocol/PROTOCOL.md (relative to --root, the
repository). DIR (default: $JIM_BUILD, else ROOT/build-test) holds bin/jimd and bin/jim.

What it checks, per file:
  * Every fenced block tagged ```sh, ```bash, ```shell or ```console (commands after "$ ") runs,
    in the order of the file, with bash -e -o pipefail, from ROOT, with no standard input (so no
    terminal) and a timeout, against a jimd started for this file (127.0.0.1, ephemeral TCP port
    from --port-file, a free HTTP port, --kdf-iterations 1000, data and logs in a temporary
    folder). Then every block runs a second time against the same daemon, and a third time on
    another fresh daemon where the accounts that the documents have people register by hand
    (`jim ... -u NAME` in skipped blocks and in inline code) already exist with passwords of their
    own: an example must work on a fresh server, when run twice, and next to a reader's accounts.
  * What the documents say and the check rewrites, in the block's text only:
      build-release/bin/ and build-test/bin/  ->  a folder whose jim and jimd are those of DIR
      7777 (jimd's TCP port)                   ->  the test daemon's TCP port
      7780 (jimd's HTTP port)                  ->  the test daemon's HTTP port
    and, because `jim` connects to 7777 when given no port, the `jim` of that folder (also first
    on PATH) adds `-p PORT` unless the example gives -p/--port itself.
  * socat exits 0 whatever the server answers, so `socat` (first on PATH) is a wrapper that runs
    the real one and fails when a request got an error reply (response >= 400) or no reply.
  * A block that cannot run here carries, right before it, <!-- docs-check: skip (reason) -->
    (starts the daemon in the foreground, is interactive, installs packages, opens a browser).
    <!-- docs-check: allow-errors 400 409 (reason) --> lets a socat example get those codes.
  * Paths, in every shell block (skipped ones too) and every `inline code` span: build-X/ must be
    a folder that a script under scripts/ or bench/ names (its cmake -B), build-X/bin/NAME a
    program the project builds (add_executable), and any other path that starts with a folder of
    the repository must exist; relative Markdown links must point at files that exist.
  * A code block that is not tagged as shell but starts like a command (4-space indented blocks
    included) fails: tag it ```sh so that it is checked.

Exit status 0 when everything passed, 1 when something failed (each failure names FILE:LINE),
2 for a usage error or when the daemon cannot be started.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_FILES = ["README.md", "web/README.md", "protocol/PROTOCOL.md"]
SHELL_LANGS = {"sh", "bash", "shell", "console"}
DOC_TCP_PORT = "7777"
DOC_HTTP_PORT = "7780"
DIRECTIVE = re.compile(r"^\s*<!--\s*docs-check:\s*(.*?)\s*-->\s*$")
FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})\s*([\w+-]*)[^\n]*$")
# Words a shell example starts with; an untagged code block that starts so is flagged.
COMMAND_WORDS = {
    "socat", "jim", "jimd", "printf", "echo", "curl", "nc", "cmake", "ctest", "python3", "node",
    "xdg-open", "sudo", "apt-get", "export", "cd", "git", "bash", "sh", "npm", "npx", "make",
}
COMMAND_PATH = re.compile(r"^(\./)?(scripts|build[\w.-]*|tests|bench)/")


@dataclass
class Block:
    """One fenced or indented code block: `line` is the 1-based line of its opening fence."""

    file: str
    line: int
    lang: str
    text: str
    fenced: bool
    skip: str | None = None  # the reason, when marked skip
    allow: list[int] = field(default_factory=list)  # error codes a socat example may get


@dataclass
class Doc:
    path: str  # as given, relative to the root
    blocks: list[Block]
    inline: list[tuple[int, str]]  # (line, text of an `inline code` span)
    links: list[tuple[int, str]]  # (line, target of a Markdown link)
    errors: list[str]


def parse_doc(root: Path, rel: str) -> Doc:
    """Splits a Markdown file into code blocks (with their docs-check directives), inline code
    spans and link targets; malformed directives are returned as errors."""
    lines = (root / rel).read_text(encoding="utf-8").splitlines()
    doc = Doc(rel, [], [], [], [])
    pending: list[tuple[int, str]] = []  # directives waiting for their block
    i = 0
    prev_blank = True
    in_list = False  # an indented paragraph after a list item continues it: not code
    while i < len(lines):
        line = lines[i]
        m = DIRECTIVE.match(line)
        if m:
            pending.append((i + 1, m.group(1)))
            i += 1
            continue
        fence = FENCE.match(line)
        indented = line.startswith("    ") and prev_blank and not in_list and line.strip() != ""
        if fence or indented:
            start = i + 1
            if fence:
                marker = fence.group(2)
                lang = fence.group(3).lower()
                body = []
                i += 1
                while i < len(lines) and not lines[i].lstrip().startswith(marker):
                    body.append(lines[i])
                    i += 1
                i += 1  # the closing fence
            else:
                lang = ""
                body = []
                while i < len(lines) and (lines[i].startswith("    ") or lines[i].strip() == ""):
                    body.append(lines[i][4:])
                    i += 1
                while body and body[-1].strip() == "":
                    body.pop()
            block = Block(rel, start, lang, "\n".join(body) + "\n", bool(fence))
            for at, text in pending:
                apply_directive(doc, block, at, text)
            pending = []
            doc.blocks.append(block)
            prev_blank = False
            continue
        if pending and line.strip():
            for at, _ in pending:
                doc.errors.append(f"{rel}:{at}: docs-check directive not right before a code block")
            pending = []
        for m in re.finditer(r"(`+)(.+?)\1", line):
            doc.inline.append((i + 1, m.group(2).strip()))
        for m in re.finditer(r"\]\(([^)\s]+)\)", line):
            doc.links.append((i + 1, m.group(1)))
        prev_blank = line.strip() == ""
        if not prev_blank and not line.startswith(" "):
            in_list = bool(re.match(r"([-*+]|\d+[.)])\s", line))
        i += 1
    for at, _ in pending:
        doc.errors.append(f"{rel}:{at}: docs-check directive not right before a code block")
    return doc


def apply_directive(doc: Doc, block: Block, at: int, text: str) -> None:
    m = re.fullmatch(r"skip\s*\((.+)\)", text)
    if m:
        block.skip = m.group(1).strip()
        return
    m = re.fullmatch(r"allow-errors\s+([\d\s]+?)\s*\((.+)\)", text)
    if m:
        block.allow = [int(c) for c in m.group(1).split()]
        return
    doc.errors.append(
        f"{doc.path}:{at}: unknown docs-check directive '{text}' (use 'skip (reason)' or "
        "'allow-errors CODE... (reason)')"
    )


def shell_commands(block: Block) -> str:
    """The commands of a shell block: a console block's lines after "$ " (with their "\\"
    continuations), every line of the others."""
    if block.lang != "console":
        return block.text
    out = []
    cont = False
    for line in block.text.splitlines():
        if cont or line.startswith("$ "):
            out.append(line if cont else line[2:])
            cont = line.endswith("\\")
    return "\n".join(out) + "\n"


def looks_like_shell(text: str) -> bool:
    for line in text.splitlines():
        words = line.split()
        while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):
            words = words[1:]  # VAR=value prefixes
        if not words:
            continue
        return words[0] in COMMAND_WORDS or bool(COMMAND_PATH.match(words[0]))
    return False


# ---------------------------------------------------------------------------------------------
# Paths


def known_build_dirs(root: Path) -> set[str]:
    """The build folders the project's scripts name (build-NAME: cmake -B, run_suite ...)."""
    dirs = set()
    for script in list(root.glob("scripts/*.sh")) + list(root.glob("bench/*.sh")):
        dirs.update(re.findall(r"(?<![\w/.])(build-[\w-]+)(?![\w.-])", script.read_text()))
    return dirs


def known_programs(root: Path) -> set[str]:
    progs = set()
    for top, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith((".", "build")) and d != "node_modules"]
        if "CMakeLists.txt" in files:
            text = (Path(top) / "CMakeLists.txt").read_text()
            progs.update(re.findall(r"add_executable\(\s*([\w.-]+)", text))
    return progs


PATHISH = re.compile(r"^(\./)?([\w.-]+/)+[\w.*-]*$")


def check_paths(root: Path, doc: Doc, builds: set[str], programs: set[str]) -> list[str]:
    errors = []
    top_dirs = {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}

    def check_word(line: int, word: str) -> None:
        word = word.strip("'\"()[]{}<>,;:`")
        if "://" in word or not PATHISH.match(word):
            return
        parts = word.removeprefix("./").split("/")
        first = parts[0]
        if first.startswith("build"):
            if first not in builds:
                errors.append(
                    f"{doc.path}:{line}: '{word}': no script builds {first}/ "
                    f"(they build {', '.join(sorted(builds))})"
                )
            elif len(parts) >= 3 and parts[1] == "bin" and parts[2] and parts[2] not in programs:
                errors.append(f"{doc.path}:{line}: '{word}': the project builds no program '{parts[2]}'")
            return
        if first in top_dirs and "*" not in word and not (root / word).exists():
            errors.append(f"{doc.path}:{line}: '{word}' does not exist")

    for block in doc.blocks:
        if block.lang in SHELL_LANGS or looks_like_shell(block.text):
            for n, text in enumerate(shell_commands(block).splitlines()):
                for word in re.split(r"[\s=]+", text.split(" #")[0]):
                    check_word(block.line + 1 + n, word)
    for line, text in doc.inline:
        for word in re.split(r"[\s=]+", text):
            check_word(line, word)
    base = (root / doc.path).parent
    for line, target in doc.links:
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        path = target.split("#")[0]
        if path and not (base / path).exists():
            errors.append(f"{doc.path}:{line}: link to '{target}': no such file")
    return list(dict.fromkeys(errors))


# ---------------------------------------------------------------------------------------------
# The daemon


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    """A jimd on 127.0.0.1 with its own data and log folders under `work`."""

    def __init__(self, jimd: Path, work: Path):
        self.work = work
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.http_port = 0
        for _attempt in range(3):  # the HTTP port is picked before jimd binds it: a rare race
            if self._start(jimd):
                return
        raise RuntimeError(f"jimd did not start; its output:\n{self.output()}")

    def _start(self, jimd: Path) -> bool:
        port_file = self.work / "port"
        port_file.unlink(missing_ok=True)
        self.http_port = free_port()
        (self.work / "data").mkdir(exist_ok=True)
        self.out = open(self.work / "jimd.out", "wb")
        self.proc = subprocess.Popen(
            [str(jimd), "-a", "127.0.0.1", "-p", "0", "--port-file", str(port_file),
             "--http-port", str(self.http_port), "--kdf-iterations", "1000", "--throttle-loopback", "no",
             "--data-dir", str(self.work / "data"), "--log-dir", str(self.work / "logs")],
            stdin=subprocess.DEVNULL, stdout=self.out, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:  # jimd writes the file once it accepts connections
            if port_file.exists() and port_file.read_text().strip():
                self.port = int(port_file.read_text().strip())
                return True
            if self.proc.poll() is not None:
                self.out.close()
                return False
            time.sleep(0.02)
        self.stop()
        return False

    def output(self) -> str:
        return (self.work / "jimd.out").read_text(errors="replace")[-4000:]

    def register(self, names: list[str]) -> None:
        """Registers each name with a random password (a reader's own account); 409 is fine."""
        for name in names:
            with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
                frame = {"action": "register",
                         "user": {"account_name": name, "password": secrets.token_hex(8)}}
                s.sendall((json.dumps(frame) + "\n" + '{"action":"quit"}\n').encode())
                f = s.makefile("r", encoding="utf-8")
                reply = next((r for r in map(json.loads, f) if "response" in r), None)
                if reply is None or reply["response"] not in (201, 409):
                    raise RuntimeError(f"{name}: {reply or 'no reply'}")

    def stop(self) -> None:
        """SIGTERM (jimd saves and exits), SIGKILL after 10 s."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()


# ---------------------------------------------------------------------------------------------
# Running the blocks


def make_shims(shim: Path, build: Path, port: int) -> None:
    """shim/jim (adds -p PORT unless given), shim/jimd, shim/socat (checks the replies)."""
    shim.mkdir(parents=True, exist_ok=True)
    jim = shim / "jim"
    jim.write_text(
        "#!/bin/sh\n"
        "# docs-check: jim connects to the test daemon unless the example names a port.\n"
        "for a do case $a in -p|-p*|--port|--port=*|-h|--help|-V|--version)\n"
        f"  exec '{build}/bin/jim' \"$@\";; esac; done\n"
        f"exec '{build}/bin/jim' -p {port} \"$@\"\n"
    )
    socat = shim / "socat"
    socat.write_text(
        "#!/bin/sh\n"
        f"exec '{sys.executable}' '{Path(__file__).resolve()}' --as-socat \"$@\"\n"
    )
    for f in (jim, socat):
        f.chmod(0o755)
    jimd = shim / "jimd"
    if not jimd.exists():
        jimd.symlink_to(build / "bin" / "jimd")


def rewrite(text: str, shim: Path, port: int, http_port: int) -> str:
    text = re.sub(r"(?<![\w/.-])(\./)?build-(release|test)/bin/", f"{shim}/", text)
    text = re.sub(rf"\b{DOC_TCP_PORT}\b", str(port), text)
    return re.sub(rf"\b{DOC_HTTP_PORT}\b", str(http_port), text)


def run_block(block: Block, script: str, env: dict, root: Path, timeout: float) -> tuple[int | None, str]:
    """Runs `script`; returns (exit status or None on timeout, combined output)."""
    env = dict(env)
    env["DOCS_CHECK_ALLOW"] = " ".join(map(str, block.allow))
    proc = subprocess.Popen(
        ["bash", "-e", "-o", "pipefail", "-c", script], cwd=root, env=env,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, so a timeout ends all it started
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        code = None
    try:  # whatever the block left running in the background
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return code, out.decode(errors="replace")


def interactive_names(docs: list[Doc]) -> list[str]:
    """Names the documents have people register by hand: `jim ... -u NAME` where it is not run."""
    texts = [t for d in docs for _, t in d.inline]
    texts += [b.text for d in docs for b in d.blocks if b.skip]
    names = set()
    for t in texts:
        for line in t.splitlines():
            if re.search(r"\bjim\b", line):
                names.update(re.findall(r"(?<=\s)-u\s+([A-Za-z0-9_.-]+)", line))
    return sorted(names)


def indent(text: str) -> str:
    return "".join("    | " + line + "\n" for line in text.rstrip("\n").splitlines()) or "    | (nothing)\n"


def check_file(doc: Doc, names: list[str], build: Path, root: Path, timeout: float,
               verbose: int) -> tuple[int, int, int, list[str]]:
    """Runs the shell blocks of one document three times: twice in a row on a fresh daemon,
    then once on another daemon where `names` already have accounts (a reader's, with passwords
    of their own). Returns (blocks run, blocks skipped, runs that passed, failures)."""
    runnable = [b for b in doc.blocks if b.lang in SHELL_LANGS and not b.skip]
    skipped = sum(1 for b in doc.blocks if b.lang in SHELL_LANGS and b.skip)
    if not runnable:
        return 0, skipped, 0, []
    failures: list[str] = []
    passed = 0
    readers = ", ".join(names) or "nobody"
    scenarios = [
        ([], [(1, "on a fresh daemon"), (2, "run a second time")]),
        (names, [(3, f"on a daemon where {readers} registered by hand first")]),
    ]
    for seeded, runs in scenarios:
        with tempfile.TemporaryDirectory(prefix="jim-docs-") as tmp:
            work = Path(tmp)
            daemon = Daemon(build / "bin" / "jimd", work)
            failed_before = len(failures)
            try:
                try:
                    daemon.register(seeded)
                except (OSError, ValueError, RuntimeError) as e:
                    failures.append(f"{doc.path}: registering {readers} on a fresh daemon: {e}\n")
                    runs = []
                shim = work / "bin"
                make_shims(shim, build, daemon.port)
                env = {k: v for k, v in os.environ.items() if not k.startswith("JIM")}
                env["PATH"] = f"{shim}:{env.get('PATH', '/usr/bin:/bin')}"
                env["DOCS_CHECK_SOCAT"] = shutil.which("socat") or "socat"
                env["HOME"] = str(work)
                env["XDG_STATE_HOME"] = str(work / "state")  # jim's tokens and history
                for run, when in runs:
                    for block in runnable:
                        script = rewrite(shell_commands(block), shim, daemon.port, daemon.http_port)
                        started = time.monotonic()
                        code, out = run_block(block, script, env, root, timeout)
                        took = time.monotonic() - started
                        where = f"{block.file}:{block.line}"
                        if code == 0:
                            passed += 1
                            if verbose:
                                print(f"ok    {where} (run {run}, {took:.2f} s)")
                            if verbose > 1:
                                print(indent(out), end="")
                            continue
                        why = f"timed out after {timeout:g} s" if code is None else f"exit status {code}"
                        failures.append(
                            f"{where}: shell example failed ({why}; run {run}, {when})\n"
                            f"  the block:\n{indent(block.text)}"
                            f"  as run (ports and paths rewritten):\n{indent(script)}"
                            f"  its output:\n{indent(out)}"
                        )
                        print(f"FAIL  {where} (run {run}, {when})")
            finally:
                daemon.stop()
            if len(failures) > failed_before:
                failures[-1] += f"  jimd's output:\n{indent(daemon.output())}"
    return len(runnable), skipped, passed, failures


# ---------------------------------------------------------------------------------------------
# socat wrapper


def as_socat(args: list[str]) -> int:
    """Runs the real socat with `args` and stdin; fails on an error reply or a missing reply."""
    data = b"" if sys.stdin.isatty() else sys.stdin.buffer.read()
    proc = subprocess.run([os.environ.get("DOCS_CHECK_SOCAT", "socat"), *args], input=data,
                          stdout=subprocess.PIPE)
    sys.stdout.buffer.write(proc.stdout)
    sys.stdout.flush()
    if proc.returncode != 0:
        return proc.returncode
    allowed = {int(c) for c in os.environ.get("DOCS_CHECK_ALLOW", "").split()}

    def frames(raw: bytes) -> list[dict]:
        out = []
        for line in raw.decode(errors="replace").splitlines():
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                out.append(obj)
        return out

    requests = [f for f in frames(data) if "action" in f]
    replies = [f for f in frames(proc.stdout) if "response" in f]
    bad = [r for r in replies if r["response"] >= 400 and r["response"] not in allowed]
    if bad:
        print(f"docs-check: socat got an error reply: {json.dumps(bad[0])}", file=sys.stderr)
        return 1
    if len(replies) < len(requests):
        print(f"docs-check: socat sent {len(requests)} requests and got {len(replies)} replies",
              file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------------------------------------


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--as-socat":
        return as_socat(sys.argv[2:])
    here = Path(__file__).resolve().parent.parent
    ap = argparse.ArgumentParser(description="Run the documentation's shell examples.")
    ap.add_argument("files", nargs="*", help=f"Markdown files (default: {' '.join(DEFAULT_FILES)})")
    ap.add_argument("--root", type=Path, default=here, help="the repository (default: this one)")
    ap.add_argument("--build", type=Path, default=None,
                    help="build folder with bin/jimd and bin/jim (default: $JIM_BUILD or ROOT/build-test)")
    ap.add_argument("--timeout", type=float, default=15, help="seconds per block (default 15)")
    ap.add_argument("-v", "--verbose", action="count", default=0,
                    help="list every block run (-vv: with its output)")
    a = ap.parse_args()
    root = a.root.resolve()
    build = (a.build or Path(os.environ.get("JIM_BUILD") or root / "build-test")).resolve()
    for prog in ("jimd", "jim"):
        if not os.access(build / "bin" / prog, os.X_OK):
            print(f"check-docs: no {build}/bin/{prog}: build it or give --build DIR", file=sys.stderr)
            return 2
    if not shutil.which("socat"):
        print("check-docs: socat is not installed (scripts/install-deps.sh installs it)", file=sys.stderr)
        return 2

    started = time.monotonic()
    docs = [parse_doc(root, f) for f in (a.files or DEFAULT_FILES)]
    builds, programs = known_build_dirs(root), known_programs(root)
    problems: list[str] = []
    for doc in docs:
        problems += doc.errors
        problems += check_paths(root, doc, builds, programs)
        for b in doc.blocks:
            if b.lang not in SHELL_LANGS and looks_like_shell(b.text):
                kind = "a fenced block without a shell tag" if b.fenced else "an indented code block"
                problems.append(f"{doc.path}:{b.line}: a command in {kind}: write it as ```sh so it is checked")
            if b.skip and b.lang not in SHELL_LANGS:
                problems.append(f"{doc.path}:{b.line}: 'skip' marks a block that is not a shell block")
    names = interactive_names(docs)
    ran = skipped = passed = 0
    for doc in docs:
        try:
            r, s, p, f = check_file(doc, names, build, root, a.timeout, a.verbose)
        except RuntimeError as e:
            print(f"check-docs: {doc.path}: {e}", file=sys.stderr)
            return 2
        ran, skipped, passed, problems = ran + r, skipped + s, passed + p, problems + f
    for p in problems:
        print(p, file=sys.stderr)
    took = time.monotonic() - started
    failed = len(problems)
    print(f"check-docs: {ran} shell examples run 3 times, {skipped} skipped (marked), "
          f"{failed} problem{'s' if failed != 1 else ''}, {took:.1f} s")
    # runs of a block that passed; a failed run of a block and a wrong path count as failed
    print(f"docs: {passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
