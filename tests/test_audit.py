"""`ociboot audit` end to end, against a real registry (Debian's docker-registry) of its own.

The namespace: five repositories of six tags each over one shared base layer (os/r0 … os/r4),
tags sharing digests within a repository and one digest in every repository, some images not
bootable; and os/broken, whose three tags cannot be read (a layer blob deleted from the
registry's storage, a layer whose bytes are not what its config says, a layer that is no
archive at all).  The registry's own log counts every blob it served.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from ociboot import pipeline, schemas
from ociboot.audit import output as audit_output
from ociboot.audit import run as audit_run
from ociboot.audit.record import MAX_RECORD_BYTES, AuditRecord
from ociboot.audit.targets import Target
from ociboot.boot.context import Policy
from ociboot.cli import app
from tests.support.bootimages import KVER, generic
from tests.support.dask_cluster import DaskCluster
from tests.support.faultproxy import FaultProxy
from tests.support.imagebuilder import (
    BuiltImage,
    ImageBuilder,
    LayerBuilder,
    compress,
    sha256,
    write_oci_archive,
)
from tests.support.redis_server import RedisServer
from tests.support.registry_push import Pusher
from tests.support.registry_server import RegistryServer, blob_gets, start_registry

runner = CliRunner()

REPOS = [f"os/r{i}" for i in range(5)]
#: tag -> the image it names in each repository (S: one image in every repository).
TAGS = {"v1": "A", "v2": "A", "v3": "B", "v4": "B", "v5": "C", "v6": "S"}
NOT_BOOTABLE = {"B"}
BROKEN = "os/broken"


@dataclass
class Namespace:
    server: RegistryServer
    images: dict[tuple[str, str], BuiltImage]  # (repository, tag) -> image
    base: str  # the shared base layer's digest

    @property
    def url(self) -> str:
        return f"docker://{self.server.host}"

    def gets(self, digests: list[str]) -> int:
        """Blob GETs of these digests from every repository."""
        return sum(blob_gets(self.server, repo, digests) for repo in [*REPOS, BROKEN])


def _image(base: LayerBuilder, name: str, bootable: bool) -> BuiltImage:
    builder = ImageBuilder().add_layer(base, "gzip")
    builder.add_layer(LayerBuilder().file("etc/build-id", f"{name}\n"), "gzip")
    if not bootable:
        builder.add_layer(LayerBuilder().whiteout(f"boot/vmlinuz-{KVER}"), "none")
    return builder.build()


@pytest.fixture(scope="module")
def namespace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Namespace]:
    server = start_registry("namespace", tmp_path_factory.mktemp("audit-registry"))
    pusher = Pusher(server.url)
    base = generic().base_layer()
    shared = _image(base, "shared", True)
    images: dict[tuple[str, str], BuiltImage] = {}
    for repo in REPOS:
        own = {n: _image(base, f"{repo}-{n}", n not in NOT_BOOTABLE) for n in "ABC"}
        own["S"] = shared
        for tag, name in TAGS.items():
            pusher.push(repo, own[name], tag)
            images[repo, tag] = own[name]
    # os/broken: nothing here can be read, each for another reason.
    gone = _image(base, "gone", True)
    pusher.push(BROKEN, gone, "deleted")
    server.blob_file(gone.layers[1].digest).unlink()
    lying = ImageBuilder().add_layer(base, "gzip")
    lying.add_layer(LayerBuilder().file("etc/build-id", "lying\n"), "gzip", diff_id=sha256(b"something else"))
    pusher.push(BROKEN, lying.build(), "wrong-digest")
    garbage = ImageBuilder().add_layer(compress(b"\x00not a tar archive" * 100, "gzip"), "none")
    garbage.add_layer(os.urandom(4096), "none")
    pusher.push(BROKEN, garbage.build(), "hostile")
    yield Namespace(server, images, shared.layers[0].digest)
    server.stop()


def audit(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["audit", *args])
    return result.exit_code, result.stdout, result.stderr


def records(text: str) -> list[AuditRecord]:
    return [AuditRecord.parse(line) for line in text.splitlines()]


def _layers_and_configs(ns: Namespace) -> tuple[set[str], set[str]]:
    layers = {b.digest for image in ns.images.values() for b in image.layers}
    configs = {image.config.digest for image in ns.images.values()}
    return layers, configs


@pytest.fixture(scope="module")
def fresh(namespace: Namespace, tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str, Path]:
    """One audit of the whole namespace, its jsonl in a file; the blob counts are its own."""
    layers, configs = _layers_and_configs(namespace)
    assert namespace.gets(sorted(layers | configs)) == 0
    out = tmp_path_factory.mktemp("fresh") / "audit.jsonl"
    code, _, err = audit(namespace.url, "--format", "jsonl", "-o", str(out), "--jobs", "3")
    return code, err, out


def test_every_tag_gets_a_record_and_each_digest_is_judged_once(
    namespace: Namespace, fresh: tuple[int, str, Path]
) -> None:
    code, err, out = fresh
    found = records(out.read_text())
    assert code == 3, err
    assert len(found) == 33 == len({(r.repository, r.tag) for r in found})
    judged = {(r.repository, r.tag): r for r in found if r.repository != BROKEN}
    assert len(judged) == 30
    for (repo, tag), record in judged.items():
        image = namespace.images[repo, tag]
        assert record.registry == namespace.server.host
        assert record.digest == image.digest and record.error is None
        assert record.bootable is (TAGS[tag] not in NOT_BOOTABLE), record
        assert bool(record.failed) is (TAGS[tag] in NOT_BOOTABLE)
        assert record.platforms == ("linux/amd64",)
    # The registry's own log: every layer fetched once for the whole audit (the base layer is in
    # every image of five repositories), every config once per digest (S's in all five).
    layers, configs = _layers_and_configs(namespace)
    assert len(layers) == 1 + 3 * 5 + 1 + 1 and len(configs) == 3 * 5 + 1
    assert {d: namespace.gets([d]) for d in sorted(layers | configs)} == dict.fromkeys(
        sorted(layers | configs), 1
    )


def test_unreadable_and_hostile_tags_do_not_stop_the_audit(fresh: tuple[int, str, Path]) -> None:
    code, err, out = fresh
    broken = {r.tag: r for r in records(out.read_text()) if r.repository == BROKEN}
    assert set(broken) == {"deleted", "wrong-digest", "hostile"}
    for tag, record in broken.items():
        assert record.bootable is None and record.error and record.digest, record
        assert f"{BROKEN}:{tag}" in err  # an error line names each
    assert "not found" in broken["deleted"].error
    assert "diff_id" in broken["wrong-digest"].error or "digest" in broken["wrong-digest"].error
    assert code == 3


def test_every_record_follows_the_shipped_schema(fresh: tuple[int, str, Path]) -> None:
    schema = schemas.load("audit-record")
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    lines = fresh[2].read_text().splitlines()
    for line in lines:
        assert list(validator.iter_errors(json.loads(line))) == []
    one = json.loads(lines[0])
    assert "$schema" not in one and schema["$id"] == schemas.schema_id("audit-record")
    assert not validator.is_valid({**one, "surprise": 1})
    assert not validator.is_valid({**one, "bootable": None, "error": None})


def test_text_ends_with_counts_per_verdict_and_per_failing_rule(namespace: Namespace) -> None:
    code, out, _ = audit(namespace.url, "--repo", "^os/r", "--format", "text")
    lines = out.splitlines()
    assert code == 1
    assert sum(line.startswith("BOOTABLE ") for line in lines) == 20
    assert sum(line.startswith("NOT BOOTABLE ") for line in lines) == 10
    assert (
        "audited 30 tags, 16 images: 20 bootable (11 images), 10 not bootable (5 images), "
        "0 unreadable (0 images)"
    ) in lines
    failing = lines[lines.index("failing rules (tags):") + 1 :]
    assert failing and all(line.split()[-1] == "10" for line in failing)


def test_resume_skips_the_digests_already_judged(
    namespace: Namespace, fresh: tuple[int, str, Path], tmp_path: Path
) -> None:
    lines = fresh[2].read_text().splitlines()
    judged = [line for line in lines if json.loads(line)["bootable"] is not None]
    # An interrupted run: some judged records, and the last one cut short.
    done, cut = judged[:12], judged[12][:40]
    resume = tmp_path / "audit.jsonl"
    resume.write_text("".join(line + "\n" for line in done) + cut)
    skipped = {json.loads(line)["digest"] for line in done}
    skipped_configs = sorted(
        {i.config.digest for (r, t), i in namespace.images.items() if i.digest in skipped}
    )
    before = namespace.gets(skipped_configs)
    code, _, err = audit(namespace.url, "--resume", str(resume), "--format", "jsonl", "-o", str(resume))
    assert code == 3 and "cut short" in err
    assert namespace.gets(skipped_configs) == before  # not one config of a judged digest again
    assert sorted(resume.read_text().splitlines()) == sorted(lines)
    # Resumed from a finished audit of the judged repositories: no blob is fetched at all.
    layers, configs = _layers_and_configs(namespace)
    before = namespace.gets(sorted(layers | configs))
    code, out, _ = audit(namespace.url, "--repo", "^os/r", "--resume", str(fresh[2]), "--format", "jsonl")
    assert code == 1
    assert namespace.gets(sorted(layers | configs)) == before
    assert sorted(out.splitlines()) == sorted(judged)


def test_resume_judges_again_what_another_policy_judged(
    namespace: Namespace, fresh: tuple[int, str, Path], tmp_path: Path
) -> None:
    """A verdict is the image's under one policy: resumed under another (here --skip of the
    rule that made B not bootable, or a record from before ociboot said what judged it), every
    digest is judged again and the new verdict is the one written."""
    lines = [line for line in fresh[2].read_text().splitlines() if json.loads(line)["bootable"] is False]
    failed = sorted({rule for line in lines for rule in json.loads(line)["failed"]})
    configs = sorted(
        {
            i.config.digest
            for i in namespace.images.values()
            if i.digest in {json.loads(line)["digest"] for line in lines}
        }
    )
    resume = tmp_path / "earlier.jsonl"
    resume.write_text("".join(line + "\n" for line in lines))
    before = namespace.gets(configs)
    skips = [arg for rule in failed for arg in ("--skip", rule)]
    code, out, _ = audit(
        namespace.url, "--repo", "^os/r", "--resume", str(resume), "--format", "jsonl", *skips
    )
    assert code == 0 and all(r.bootable for r in records(out))
    assert namespace.gets(configs) - before == len(configs)  # each judged again, once
    # A record that does not say what judged it is judged again too.
    resume.write_text("".join(json.dumps({**json.loads(line), "judged_with": None}) + "\n" for line in lines))
    before = namespace.gets(configs)
    code, out, _ = audit(namespace.url, "--repo", "^os/r", "--resume", str(resume), "--format", "jsonl")
    assert code == 1 and namespace.gets(configs) - before == len(configs)


def test_a_bad_resume_line_is_a_usage_error_naming_it(namespace: Namespace, tmp_path: Path) -> None:
    resume = tmp_path / "resume.jsonl"
    resume.write_text('{"registry": "x"}\n')
    code, _, err = audit(namespace.url, "--resume", str(resume))
    assert code == 2 and "line 1" in err
    resume.write_text("\n" * 3 + "[1, 2]\n")
    code, _, err = audit(namespace.url, "--resume", str(resume))
    assert code == 2 and "line 4" in err
    # A line of no end is refused at the record bound, not read whole.
    resume.write_text("\n" + "x" * (3 * MAX_RECORD_BYTES))
    code, _, err = audit(namespace.url, "--resume", str(resume))
    assert code == 2 and f"line 2: over {MAX_RECORD_BYTES} bytes" in err


def test_outputs_are_refused_before_any_image_is_read(namespace: Namespace, tmp_path: Path) -> None:
    before = namespace.server.log.read_text()
    policy = tmp_path / "policy.toml"
    policy.write_text("")
    earlier = tmp_path / "earlier.jsonl"
    earlier.write_text("")
    for args, said in (
        (["-o", str(tmp_path / "no-such-dir" / "out")], "No such file or directory"),
        (["-o", str(policy), "--policy", str(policy)], "is read by this run"),
        (["-o", str(tmp_path / "a"), "--html", str(tmp_path / "a")], "into one file"),
        (["--resume", str(tmp_path / "absent.jsonl")], "absent.jsonl"),
        (["--executor", "carrier-pigeon"], "not an executor"),
        (["--tag", "("], "--tag"),
        # Only the jsonl records are appended to the file resumed from: a text report would end it.
        (["--resume", str(earlier), "-o", str(earlier)], "is read by this run"),
    ):
        code, _, err = audit(namespace.url, *args)
        assert code == 2 and said in " ".join(err.split()), (args, err)
    code, _, err = audit()
    assert code == 2 and "NAMESPACE" in err
    # Refused for its second output, the audit leaves no trace of the first.
    records_file = tmp_path / "records.jsonl"
    code, _, err = audit(namespace.url, "-o", str(records_file), "--html", str(tmp_path / "none" / "a.html"))
    assert code == 2 and not records_file.exists(), err
    assert namespace.server.log.read_text().count("GET /v2/") == before.count("GET /v2/")


def test_the_private_cache_is_removed_and_a_users_cache_is_kept(
    namespace: Namespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    code, _, _ = audit(namespace.url, "--repo", "^os/r0$", "--tag", "v1")
    assert code == 0
    assert list(tmp_path.iterdir()) == []
    cache = tmp_path / "cache"
    code, _, _ = audit(namespace.url, "--repo", "^os/r0$", "--tag", "v1", "--cache-dir", str(cache))
    assert code == 0 and any(cache.rglob("*"))
    shutil.rmtree(cache)


def test_same_digest_under_two_repositories_is_judged_once(namespace: Namespace, tmp_path: Path) -> None:
    listed = tmp_path / "refs.txt"
    listed.write_text("".join(f"{namespace.url}/{repo}:v6\n" for repo in REPOS))
    shared = namespace.images[REPOS[0], "v6"]
    before = namespace.gets([shared.config.digest])
    code, out, _ = audit("--from", str(listed), "--format", "jsonl")
    found = records(out)
    assert code == 0 and len(found) == 5 and Counter(r.digest for r in found) == {shared.digest: 5}
    assert namespace.gets([shared.config.digest]) == before + 1


def test_a_record_line_is_strict_utf8_whatever_the_registry_named() -> None:
    hostile = AuditRecord("r.example", "os/x", "v1\x1b[2J\ud800", None, None, error="no\nsuch tag")
    line = hostile.line()
    line.encode("utf-8")  # strict: a lone surrogate would raise here
    assert "\x1b" not in line and "\n" not in line
    assert AuditRecord.parse(line).tag == "v1\\x1b[2J\\xed\\xa0\\x80"


def test_a_long_error_is_shortened_so_that_resume_reads_the_record_back(tmp_path: Path) -> None:
    # An error quotes a registry or an image: whole, it could make a line --resume refuses.
    long = AuditRecord("r.example", "os/x", "v1", None, None, error="\u00e9" * MAX_RECORD_BYTES)
    assert long.error is not None and len(long.line().encode()) < MAX_RECORD_BYTES // 4
    path = tmp_path / "resume.jsonl"
    path.write_text(long.line() + "\n")
    assert audit_output.read_resume(str(path)).earlier.lines == frozenset({long.line()})


def test_a_repository_whose_tags_are_refused_is_one_unreadable_record_and_the_rest_is_audited(
    namespace: Namespace, tmp_path: Path
) -> None:
    proxy = FaultProxy(namespace.server.host)
    out, html = tmp_path / "audit.jsonl", tmp_path / "audit.html"
    try:
        proxy.fail_next(403, f"/v2/{REPOS[1]}/tags/list")
        both = ["-f", "jsonl", "-o", str(out), "--html", str(html)]
        code, _, err = audit(f"docker://{proxy.host}", "--repo", "^os/r[0-2]$", *both)
        proxy.fail_next(403, f"/v2/{REPOS[1]}/tags/list")
        text_code, text, _ = audit(f"docker://{proxy.host}", "--repo", "^os/r[0-2]$", "--tag", "^v1$")
    finally:
        proxy.close()
    found = records(out.read_text())
    assert code == 3, err
    unlisted = [r for r in found if not r.listed]
    assert [(r.repository, r.tag, r.digest, r.bootable) for r in unlisted] == [(REPOS[1], "", None, None)]
    assert unlisted[0].error is not None and unlisted[0].error.startswith("its tags could not be listed: ")
    assert "403" in unlisted[0].error or "denied" in unlisted[0].error.lower()
    judged = {(r.repository, r.tag) for r in found if r.listed}
    assert judged == {(repo, tag) for repo in (REPOS[0], REPOS[2]) for tag in TAGS}
    assert all(r.bootable is not None for r in found if r.listed)
    assert f"{proxy.host}/{REPOS[1]}: its tags could not be listed" in err
    validator = jsonschema.Draft202012Validator(schemas.load("audit-record"))
    assert all(validator.is_valid(json.loads(line)) for line in out.read_text().splitlines())
    assert not validator.is_valid({**unlisted[0].to_json(), "digest": "sha256:" + "0" * 64})
    page = html.read_text()
    assert "repositories whose tags could not be listed" in page and "(not listed)" in page
    lines = text.splitlines()
    assert text_code == 3
    assert f"UNREADABLE    {proxy.host}/{REPOS[1]}  -  error: its tags could not be listed: " in text
    assert "audited 2 tags, 2 images: 2 bootable (2 images), 0 not bootable (0 images)" in text
    assert lines[-1] == "1 repository whose tags could not be listed"


def test_ctrl_c_removes_the_private_cache(namespace: Namespace, tmp_path: Path) -> None:
    proxy = FaultProxy(namespace.server.host)
    temp = tmp_path / "tmp"
    temp.mkdir()
    try:
        for _ in range(4):  # the config blob of the one image stalls (and its retry)
            proxy.trickle_next("/blobs/", interval=0.5)
        args = ["audit", "-q", f"docker://{proxy.host}", "--repo", "^os/r0$", "--tag", "^v1$"]
        process = subprocess.Popen(
            [sys.executable, "-m", "ociboot", *args, "--stall-timeout", "3s"],
            env={**os.environ, "TMPDIR": str(temp)},
            cwd=Path(__file__).resolve().parents[1],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(600):  # polled, not timed: until the audit is reading the blob
            if any("/blobs/" in path for _, path, _ in proxy.requests) or process.poll() is not None:
                break
            time.sleep(0.05)
        made = [p.name for p in temp.iterdir()]
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
    finally:
        proxy.close()
    assert [name.startswith("ociboot-audit-") for name in made] == [True], err
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert list(temp.iterdir()) == []


def test_a_stored_result_is_reused_only_for_the_digest_it_judged(
    namespace: Namespace, tmp_path: Path
) -> None:
    host = namespace.server.host
    now, moved_from = namespace.images["os/r1", "v1"], namespace.images["os/r1", "v3"]
    resume = tmp_path / "earlier.jsonl"
    # What an earlier run said (false on purpose, to see where it is believed): v1 named the
    # digest it names now; v5 named another digest then.  Both judged as this audit judges.
    key = audit_run.judging_key(Policy(), pipeline.Options())
    resume.write_text(
        AuditRecord(host, "os/r1", "v1", now.digest, False, ("KRN-001",), judged_with=key).line()
        + "\n"
        + AuditRecord(host, "os/r1", "v5", moved_from.digest, False, ("KRN-001",), judged_with=key).line()
        + "\n"
    )
    code, out, _ = audit(
        namespace.url, "--repo", "^os/r1$", "--tag", "^v[125]$", "--resume", str(resume), "--format", "jsonl"
    )
    found = {r.tag: r for r in records(out)}
    assert code == 1
    # v1 and v2 name the judged digest: its stored result, not read again; v5 is judged now.
    assert found["v1"].bootable is False and found["v2"].bootable is False
    assert found["v2"].failed == ("KRN-001",) and found["v2"].digest == now.digest
    assert found["v5"].bootable is True and found["v5"].digest == namespace.images["os/r1", "v5"].digest


class OneByOne:
    """A real executor that reads its references one at a time, judging each before it reads
    the next (as a cluster client submitting lazily may)."""

    def __init__(self, policy: Policy, options: pipeline.Options) -> None:
        self.policy, self.options = policy, options
        self.seen: list[str] = []

    def checked(self, references: Iterable[str]) -> Iterator[tuple[str, pipeline.Checked]]:
        for reference in references:
            self.seen.append(reference)
            yield reference, pipeline.check_reference(reference, self.policy, self.options)

    def close(self) -> None:
        pass


def test_judging_starts_while_tags_are_resolved(namespace: Namespace) -> None:
    targets = [Target(namespace.server.host, "os/r2", tag) for tag in TAGS]
    resolved: list[int] = []
    first_judged: list[int] = []
    executor = OneByOne(Policy(), pipeline.Options())

    def on_resolved(done: int) -> None:
        resolved.append(done)
        if executor.seen and not first_judged:
            first_judged.append(len(resolved))

    found = list(
        audit_run.audit(targets, Policy(), executor.options, executor, jobs=1, on_resolved=on_resolved)
    )
    assert sorted((r.tag, r.digest) for r in found) == sorted(
        (tag, namespace.images["os/r2", tag].digest) for tag in TAGS
    )
    # Each digest once, the first before the second tag was resolved; v2 (A's second tag) is
    # resolved after A was judged, and still gets A's record.
    assert len(executor.seen) == len(set(TAGS.values())) == len(set(executor.seen))
    assert first_judged == [2]


def test_html_writes_the_report_of_every_record(namespace: Namespace, tmp_path: Path) -> None:
    page = tmp_path / "audit.html"
    code, out, _ = audit(namespace.url, "--repo", "^os/r[01]$", "--format", "jsonl", "--html", str(page))
    found, html = records(out), page.read_text()
    assert code == 1 and len(found) == 12 and html.startswith("<!DOCTYPE html>")
    assert all(r.repository in html and r.tag in html for r in found) and "KRN-001" in html


def test_html_on_standard_output_with_the_records_in_a_file(namespace: Namespace, tmp_path: Path) -> None:
    # `-o FILE --html -`: the page goes where it was asked for, not nowhere.
    out = tmp_path / "audit.jsonl"
    code, page, _ = audit(namespace.url, "--repo", "^os/r0$", "-f", "jsonl", "-o", str(out), "--html", "-")
    assert code == 1 and len(records(out.read_text())) == 6
    assert page.startswith("<!DOCTYPE html>") and "KRN-001" in page


def test_a_dask_cluster_with_a_shared_redis_cache_writes_the_same_lines(
    namespace: Namespace,
    fresh: tuple[int, str, Path],
    dask_cluster: DaskCluster,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    """The whole namespace judged by two Dask workers sharing layer work through Redis: the same
    records as the threads of one process (in the order they finish, so compared sorted), each
    layer fetched once by the two workers together."""
    layers, _ = _layers_and_configs(namespace)
    before = {d: namespace.gets([d]) for d in layers}
    out = tmp_path / "dask.jsonl"
    code, _, err = audit(
        namespace.url,
        "--format",
        "jsonl",
        "-o",
        str(out),
        "--executor",
        dask_cluster.spec,
        "--cache-url",
        redis_server.url,
    )
    assert code == fresh[0] == 3, err
    assert sorted(out.read_text().splitlines()) == sorted(fresh[2].read_text().splitlines())
    assert {d: namespace.gets([d]) - before[d] for d in layers} == dict.fromkeys(layers, 1)
    assert redis_server.client().dbsize() > 0


class Forgetful:
    """A real executor (threads) that loses answers: the first one (`drop`), or every one after
    the first (`stop`: it ends early; `raise`: it fails, as a cluster client whose scheduler
    went away may)."""

    def __init__(self, policy: Policy, options: pipeline.Options, how: str) -> None:
        from ociboot.audit.executor import Threads

        self.threads, self.how = Threads(policy, options, 1), how

    def checked(self, references: Iterable[str]) -> Iterator[tuple[str, pipeline.Checked]]:
        answers = self.threads.checked(references)
        if self.how == "drop":
            next(answers, None)
            yield from answers
            return
        yield from itertools.islice(answers, 1)
        if self.how == "raise":
            raise ConnectionError("the scheduler went away")

    def close(self) -> None:
        pass


@pytest.mark.parametrize("how", ["drop", "stop", "raise"])
def test_a_tag_the_executor_gave_no_answer_for_is_unreadable_never_missing(
    namespace: Namespace, how: str
) -> None:
    targets = [Target(namespace.server.host, "os/r3", tag) for tag in TAGS]
    executor = Forgetful(Policy(), pipeline.Options(), how)
    found = list(audit_run.audit(targets, Policy(), pipeline.Options(), executor, jobs=1))
    summary = audit_run.Summary()
    for record in found:
        summary.add(record)
    # Every tag has its record; those whose image was not judged say so, and the run fails.
    assert sorted(r.tag for r in found) == sorted(TAGS)
    unjudged = [r for r in found if r.bootable is None]
    assert unjudged and all("not judged" in (r.error or "") for r in unjudged)
    assert summary.exit_code == 3


def test_a_resumed_file_whose_last_record_has_no_newline_gets_whole_lines_appended(
    namespace: Namespace, fresh: tuple[int, str, Path], tmp_path: Path
) -> None:
    lines = [line for line in fresh[2].read_text().splitlines() if json.loads(line)["repository"] == "os/r4"]
    resume = tmp_path / "audit.jsonl"
    # A whole record, its newline lost (cut just before it, or an editor that drops the last one).
    resume.write_text("\n".join(lines[:2]))
    code, _, err = audit(
        namespace.url, "--repo", "^os/r4$", "--resume", str(resume), "--format", "jsonl", "-o", str(resume)
    )
    assert code == 1 and "cut short" not in err
    # Each record on its own line, none glued to the one before: the file resumes again.
    assert sorted(resume.read_text().splitlines()) == sorted(lines)
    assert audit(namespace.url, "--repo", "^os/r4$", "--resume", str(resume), "--format", "jsonl")[0] == 1


def test_threads_take_references_as_they_free_up_and_hold_no_result_back(tmp_path: Path) -> None:
    """An audit of thousands of images must not hold every finished image's reports (whole fact
    sheets) until the end: the threads take a reference only when one is done, so at most
    IN_FLIGHT_PER_THREAD per thread are taken ahead of what was yielded."""
    from ociboot.audit.executor import IN_FLIGHT_PER_THREAD, Threads

    archive = tmp_path / "cos.tar"
    write_oci_archive(archive, {"latest": generic().build()})
    taken: list[int] = []

    def references() -> Iterator[str]:
        for i in range(12):
            taken.append(i)
            yield f"oci-archive:{archive}"

    jobs = 2
    ahead = []
    answers = 0
    for _, checked in Threads(Policy(), pipeline.Options(), jobs).checked(references()):
        answers += 1
        assert checked.reports and not checked.unreadable
        ahead.append(len(taken) - answers)
    assert answers == 12 and max(ahead) < IN_FLIGHT_PER_THREAD * jobs
