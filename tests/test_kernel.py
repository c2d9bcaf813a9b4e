"""`kernel bundle|push|status|output`: the bundle's contents, and the Kaggle side with the real `kaggle`
client against the fake Kaggle server."""

from __future__ import annotations

import importlib
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from kaggle_digits import written
from kaggle_digits.blend import submission
from kaggle_digits.data import paths
from kaggle_digits.kaggle.kernel import RUNNER_NAME
from tests.conftest import assert_one_line_error, make_slice, plant_kaggle_json

PLANTED_KEY = "KD-PLANTED-SECRET-91f2c7e05d"


def package_sources() -> set[str]:
    """The package's own source files (Python, the serve page's and the report's HTML, the planner's table),
    as bundle-relative paths."""
    return {
        f"dataset/kaggle_digits/{p.relative_to(paths.PACKAGE_DIR).as_posix()}"
        for p in paths.PACKAGE_DIR.rglob("*")
        if p.is_file() and p.suffix in (".py", ".html", ".json") and "__pycache__" not in p.parts
    }


def all_files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def test_bundle_holds_what_it_must_and_nothing_else(run_cli, tmp_path):
    plant_kaggle_json("carol", PLANTED_KEY)
    out = tmp_path / "build" / "kernel"
    result = run_cli("kernel", "bundle", "--out", out, "--preset", "quick", "--models", "cnn, dense", "--augment")
    assert result.code == 0, result.err
    assert (
        "carol/kaggle-digits-src" in result.out and "pipeline --preset quick --models cnn,dense --augment" in result.out
    )

    expected = package_sources() | {
        "dataset/dataset-metadata.json",
        "kernel/kernel-metadata.json",
        f"kernel/{RUNNER_NAME}",
        written.MANIFEST,  # the record of what the toolkit wrote: a later bundle replaces only that
    }
    assert all_files(out) == expected
    assert "dataset/kaggle_digits/__init__.py" in expected and "dataset/kaggle_digits/models/base.py" in expected

    dataset = json.loads((out / "dataset" / "dataset-metadata.json").read_text())
    assert dataset["id"] == "carol/kaggle-digits-src" and dataset["licenses"] == [{"name": "MIT"}]
    assert 6 <= len(dataset["title"]) <= 50
    kernel = json.loads((out / "kernel" / "kernel-metadata.json").read_text())
    assert kernel["id"] == "carol/kaggle-digits" and kernel["code_file"] == RUNNER_NAME
    assert (kernel["language"], kernel["kernel_type"]) == ("python", "script")
    assert kernel["is_private"] is True and kernel["enable_gpu"] is True and kernel["enable_internet"] is False
    assert kernel["machine_shape"] == "NvidiaTeslaT4", "Kaggle's default GPU machine, two T4s"
    assert kernel["competition_sources"] == ["digit-recognizer"]
    assert kernel["dataset_sources"] == ["carol/kaggle-digits-src"]
    assert len(kernel["title"]) >= 5
    runner = (out / "kernel" / RUNNER_NAME).read_text()
    assert "SETTINGS = {'preset': 'quick', 'models': 'cnn,dense', 'augment': True," in runner
    compile(runner, RUNNER_NAME, "exec")

    # The planted key is nowhere: not in the bundle, not in what the command printed.
    assert not [p for p in out.rglob("*") if p.is_file() and PLANTED_KEY.encode() in p.read_bytes()]
    assert PLANTED_KEY not in result.out + result.err

    # A second bundle replaces the first; a folder that is not a bundle is never touched.
    again = run_cli("kernel", "bundle", "--out", out, "--user", "dave")
    assert again.code == 0, again.err
    assert json.loads((out / "kernel" / "kernel-metadata.json").read_text())["id"] == "dave/kaggle-digits"
    assert [p.name for p in out.parent.iterdir()] == ["kernel"], "no staging folder left behind"
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    assert_one_line_error(run_cli("kernel", "bundle", "--out", mine, "--user", "dave"), "not a kernel bundle")
    assert (mine / "notes.txt").read_text() == "mine"


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_bundle_keeps_the_users_files_beside_it(run_cli, tmp_path):
    """A bundle folder that also holds the user's own files: the toolkit's bundle is replaced, the rest stays;
    a bundle whose files the toolkit did not write (or that were changed) is not replaced at all."""
    out = tmp_path / "work"
    assert run_cli("kernel", "bundle", "--out", out, "--user", "dave").code == 0
    (out / "README.md").write_text("my notes")
    (out / "thesis").mkdir()
    (out / "thesis" / "chapter1.tex").write_text("\\chapter{One}")
    again = run_cli("kernel", "bundle", "--out", out, "--user", "erin", "--accelerator", "none")
    assert again.code == 0, again.err
    assert (out / "README.md").read_text() == "my notes"
    assert (out / "thesis" / "chapter1.tex").read_text() == "\\chapter{One}"
    metadata = json.loads((out / "kernel" / "kernel-metadata.json").read_text())
    assert metadata["id"] == "erin/kaggle-digits" and metadata["enable_gpu"] is False
    assert "machine_shape" not in metadata and "CPU" in again.out
    assert not [p for p in out.iterdir() if p.name.startswith(".bundle-")], "no staging folder left behind"
    # The rebuilt folders have the modes of any new folder (the umask's), not a temporary folder's 0700.
    probe = tmp_path / "probe"
    probe.mkdir()
    for folder in (out, out / "dataset", out / "kernel", out / "dataset" / "kaggle_digits"):
        assert folder.stat().st_mode & 0o777 == probe.stat().st_mode & 0o777, folder

    # The user's own file inside the bundle's folders, or a changed metadata file: refused, nothing touched.
    for planted in (out / "kernel" / "notes.md", out / "dataset" / "kaggle_digits" / "data.csv"):
        planted.write_text("mine")
        before = _tree(out)
        assert_one_line_error(run_cli("kernel", "bundle", "--out", out, "--user", "dave"), str(planted), "not written")
        assert _tree(out) == before
        planted.unlink()
    edited = out / "kernel" / "kernel-metadata.json"
    edited.write_text(edited.read_text().replace("erin", "me"))
    before = _tree(out)
    assert_one_line_error(run_cli("kernel", "bundle", "--out", out, "--user", "dave"), str(edited), "changed")
    assert _tree(out) == before

    # Two metadata files beside the user's files, but no record of the toolkit's: refused.
    theirs = tmp_path / "theirs"
    for name in ("kernel/kernel-metadata.json", "dataset/dataset-metadata.json", "README.md"):
        (theirs / name).parent.mkdir(parents=True, exist_ok=True)
        (theirs / name).write_text("{}")
    before = _tree(theirs)
    assert_one_line_error(run_cli("kernel", "bundle", "--out", theirs, "--user", "dave"), "--out")
    assert _tree(theirs) == before


@pytest.mark.parametrize(
    "value, words",
    [
        ("tpu", ["--accelerator", "TPU", "CPU or GPU only"]),
        ("TpuV5E8", ["--accelerator", "TPU"]),
        ("NvidiaTeslaP100", ["--accelerator", "P100", "retired"]),
        ("cuda", ["--accelerator", "choose gpu", "none"]),
    ],
)
def test_accelerator_refused_before_anything_is_sent(run_cli, fake_kaggle, tmp_path, value, words):
    for action in ("bundle", "push"):
        result = run_cli("kernel", action, "--out", tmp_path / "b", "--accelerator", value)
        assert_one_line_error(result, *words)
    assert fake_kaggle.requests == [] and not (tmp_path / "b").exists()


def test_bundle_needs_a_user_name(run_cli, tmp_path):
    result = run_cli("kernel", "bundle", "--out", tmp_path / "b")
    assert_one_line_error(result, "no Kaggle user name", "--user", "kaggle.json")
    assert_one_line_error(run_cli("kernel", "bundle", "--out", tmp_path / "b", "--user", "a/b"), "--user")
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize(
    "models, message",
    [
        ("svm", "--models: unknown model 'svm', choose from mlp, dense, cnn, simplecnn"),
        (" , ", "--models ' , ': name at least one"),
    ],
)
def test_bundle_checks_its_models_as_the_pipeline_does(run_cli, tmp_path, models, message):
    """A bundle would otherwise ask Kaggle to run a pipeline that fails at once."""
    out = tmp_path / "b"
    bundle = run_cli("kernel", "bundle", "--out", out, "--user", "erin", "--models", models)
    assert_one_line_error(bundle, message)
    assert not out.exists()
    pipeline = run_cli("pipeline", "--models", models, "--data-dir", tmp_path / "d", "--runs-dir", tmp_path / "r")
    assert pipeline.code == 2 and message in pipeline.err


def _zip_names(content: bytes) -> set[str]:
    with zipfile.ZipFile(io.BytesIO(content)) as z:
        return set(z.namelist())


def test_push_status_output(run_cli, fake_kaggle, small_data_copy, tmp_path, monkeypatch):
    out, subs = tmp_path / "build" / "kernel", tmp_path / "submissions"
    first = run_cli("kernel", "push", "--out", out, "--preset", "quick")
    assert first.code == 0, first.err
    assert "https://www.kaggle.com/code/kdtester/kaggle-digits" in first.out
    assert "source dataset kdtester/kaggle-digits-src created" in first.out
    assert "GPU quota left this week: 29h00m of 30h00m; refreshes 2026-12-12 00:00 UTC, in " in first.out
    assert fake_kaggle.key not in first.out + first.err

    # The source dataset: the package folder went up zipped, its metadata gave the id and title.
    (create,) = fake_kaggle.calls("CreateDataset")
    assert (create.body["ownerSlug"], create.body["slug"]) == ("kdtester", "kaggle-digits-src")
    assert create.body["isPrivate"] is True and create.body["licenseName"] == "MIT"
    files = fake_kaggle.dataset_files("kdtester/kaggle-digits-src")
    assert set(files) == {"kaggle_digits.zip"}
    bundled = {f"dataset/kaggle_digits/{name}" for name in _zip_names(files["kaggle_digits.zip"])}
    assert bundled == package_sources()

    # The kernel: what kagglesdk sends to SaveKernel.
    (save,) = fake_kaggle.calls("SaveKernel")
    assert save.body["slug"] == "kdtester/kaggle-digits" and save.body["newTitle"] == "kaggle-digits"
    assert (save.body["language"], save.body["kernelType"]) == ("python", "script")
    assert save.body["isPrivate"] is True and save.body["enableGpu"] is True
    assert save.body["machineShape"] == "NvidiaTeslaT4"
    assert save.body["enableInternet"] is False
    assert save.body["datasetDataSources"] == ["kdtester/kaggle-digits-src"]
    assert save.body["competitionDataSources"] == ["digit-recognizer"]
    assert save.body["text"] == (out / "kernel" / RUNNER_NAME).read_text()

    # A second push versions the dataset (waiting while Kaggle processes it) and the kernel.
    fake_kaggle.dataset_processing = ["BLOBS_RECEIVED", "BLOBS_DECOMPRESSED"]
    second = run_cli("kernel", "push", "--out", out, "--poll", "0")
    assert second.code == 0, second.err
    assert "versioned" in second.out and "version 2" in second.out
    assert "process dataset kdtester/kaggle-digits-src: blobs_decompressed" in second.out
    assert (
        len(fake_kaggle.calls("CreateDatasetVersion")) == 1
        and len(fake_kaggle.datasets["kdtester/kaggle-digits-src"]) == 2
    )

    fake_kaggle.kernel_statuses = ["QUEUED", "RUNNING", "RUNNING", "COMPLETE"]
    naps: list[float] = []
    monkeypatch.setattr("kaggle_digits.kaggle.api.time.sleep", naps.append)  # the fake answers at once
    status = run_cli("kernel", "status", "--wait", "--poll", "5")
    assert status.code == 0, status.err
    lines = [line.split("  ")[0] for line in status.out.splitlines() if line.startswith("kdtester/kaggle-digits:")]
    assert lines == [f"kdtester/kaggle-digits: {s}" for s in ("queued", "running", "complete")]
    assert len(fake_kaggle.calls("GetKernelSessionStatus")) == 4 and naps == [5.0, 5.0, 5.0]

    # Output: submission.csv is validated and copied into submissions/ with a name saying where it came from.
    truth = submission.read_submission(small_data_copy / "solution.csv")
    kernel_sub = tmp_path / "kernel-submission.csv"
    submission.write_submission(kernel_sub, truth)
    record = {"submission": "20260101-000000-ensemble-cv0.99100.csv"}
    fake_kaggle.kernel_outputs = {
        "submission.csv": kernel_sub.read_bytes(),
        "kaggle-digits-run.json": json.dumps(record).encode(),
        "reports/summary.txt": b"ok",
        "runs/quick-cnn/trial-0/oof.npy": b"large",
    }
    got = run_cli("kernel", "output", "--out", out, "--data-dir", small_data_copy, "--submissions-dir", subs)
    assert got.code == 0, got.err
    (written,) = subs.glob("*-kernel-cv0.99100.csv")
    assert written.read_bytes() == kernel_sub.read_bytes()
    assert (out / "output" / "reports" / "summary.txt").read_text() == "ok"
    assert not (out / "output" / "runs").exists(), "only the submission, its record and the reports come back"
    (row,) = submission.read_history(subs / "history.csv")
    assert row["file"] == str(written) and row["cv_accuracy"] == "0.99100" and "kernel" in row["message"]
    assert str(written) in got.out


def test_push_rejected(run_cli, fake_kaggle, tmp_path):
    fake_kaggle.kernel_push_error = "Maximum GPU quota reached for this week"
    result = run_cli("kernel", "push", "--out", tmp_path / "b")
    assert_one_line_error(result, "rejected the kernel push", "GPU quota")
    fake_kaggle.dataset_processing = ["FAILED"]
    failed = run_cli("kernel", "push", "--out", tmp_path / "b", "--poll", "0")
    assert_one_line_error(failed, "could not process dataset", "failed")


def test_push_forbidden_and_unreachable(run_cli, fake_kaggle, tmp_path):
    fake_kaggle.fail(403, "Permission denied", "CreateDataset")
    assert_one_line_error(run_cli("kernel", "push", "--out", tmp_path / "b"), "403", "kaggle-digits-src")
    assert fake_kaggle.calls("SaveKernel") == []
    fake_kaggle.stop()
    assert_one_line_error(run_cli("kernel", "status"), "cannot reach Kaggle")


def test_status_of_unknown_and_failed_kernels(run_cli, fake_kaggle, tmp_path):
    for poll in ("0", "-1", "nan"):  # checked before any request
        assert_one_line_error(run_cli("kernel", "status", "--wait", "--poll", poll), f"--poll {poll}", "5 or more")
    assert fake_kaggle.requests == []
    assert_one_line_error(run_cli("kernel", "status"), "not found", "kernel.py push")
    assert run_cli("kernel", "push", "--out", tmp_path / "b").code == 0
    fake_kaggle.kernel_statuses = ["ERROR"]
    fake_kaggle.kernel_failure_message = "Your notebook tried to allocate more memory than is available"
    plain = run_cli("kernel", "status")
    assert plain.code == 0 and "kdtester/kaggle-digits: error" in plain.out and "more memory" in plain.out
    assert_one_line_error(run_cli("kernel", "status", "--wait"), "failed", "more memory")


def test_output_without_submission(run_cli, fake_kaggle, small_data_copy, tmp_path):
    assert run_cli("kernel", "push", "--out", tmp_path / "b").code == 0
    fake_kaggle.kernel_outputs = {"reports/summary.txt": b"ok"}
    result = run_cli("kernel", "output", "--out", tmp_path / "b", "--data-dir", small_data_copy)
    assert_one_line_error(result, "no submission.csv")


@pytest.mark.parametrize("bad", [b"ImageId,Label\n1,3\n", b"id,label\n"])
def test_output_with_invalid_submission(run_cli, fake_kaggle, small_data_copy, tmp_path, bad):
    assert run_cli("kernel", "push", "--out", tmp_path / "b").code == 0
    fake_kaggle.kernel_outputs = {"submission.csv": bad}
    subs = tmp_path / "submissions"
    result = run_cli(
        "kernel", "output", "--out", tmp_path / "b", "--data-dir", small_data_copy, "--submissions-dir", subs
    )
    assert_one_line_error(result, "submission.csv")
    assert not subs.exists() or list(subs.iterdir()) == []


def _load_runner(bundle: Path):
    """The bundled runner as a module (without running it)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bundled_runner", bundle / "kernel" / RUNNER_NAME)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("layout", ["unpacked", "zipped", "nested"])
def test_runner_finds_the_mounted_source(run_cli, tmp_path, layout):
    bundle = tmp_path / "b"
    assert run_cli("kernel", "bundle", "--out", bundle, "--user", "erin").code == 0
    runner = _load_runner(bundle)
    input_dir, working = tmp_path / "kaggle" / "input", tmp_path / "kaggle" / "working"
    package = bundle / "dataset" / "kaggle_digits"
    mount = input_dir / ("datasets/erin/kaggle-digits-src" if layout == "nested" else "kaggle-digits-src")
    mount.mkdir(parents=True)
    if layout == "zipped":
        with zipfile.ZipFile(mount / "kaggle_digits.zip", "w") as z:
            for f in package.rglob("*.py"):
                z.write(f, f.relative_to(package).as_posix())
    else:
        shutil.copytree(package, mount / "kaggle_digits")
    source = runner.find_source(input_dir, working)
    assert (source / "kaggle_digits" / "__init__.py").is_file()
    assert (source / "kaggle_digits" / "models" / "base.py").is_file()
    with pytest.raises(SystemExit, match="kaggle-digits-src"):
        runner.find_source(tmp_path / "empty", working)


def test_runner_finds_competition_files_elsewhere(run_cli, small_data, tmp_path):
    assert run_cli("kernel", "bundle", "--out", tmp_path / "b", "--user", "erin").code == 0
    runner = _load_runner(tmp_path / "b")
    input_dir = tmp_path / "input"
    shutil.copytree(small_data, input_dir / "competitions" / "digit-recognizer")
    assert runner.find_competition_files(input_dir) == input_dir / "competitions" / "digit-recognizer"
    shutil.copytree(small_data, input_dir / "digit-recognizer")  # where Kaggle mounts them: preferred
    assert runner.find_competition_files(input_dir) == input_dir / "digit-recognizer"
    with pytest.raises(SystemExit, match="train.csv"):
        runner.find_competition_files(tmp_path / "nothing")


def test_access_token_credentials(run_cli, fake_kaggle, monkeypatch, tmp_path):
    # A bare access token: the client asks Kaggle whose it is; the user name comes from that answer.
    token = "KGAT-token-3b9e1d7c55"
    (Path(os.environ["KAGGLE_CONFIG_DIR"]) / "kaggle.json").unlink()
    monkeypatch.setenv("KAGGLE_API_TOKEN", token)
    fake_kaggle.tokens[token] = "frank"
    result = run_cli("kernel", "bundle", "--out", tmp_path / "b")
    assert result.code == 0, result.err
    assert "frank/kaggle-digits-src" in result.out and token not in result.out + result.err
    listed = run_cli("submit", "--list")
    assert listed.code == 0 and "no submissions" in listed.out
    fake_kaggle.tokens.clear()
    refused = run_cli("kernel", "bundle", "--out", tmp_path / "c")
    assert_one_line_error(refused, "KAGGLE_API_TOKEN", "not usable")
    assert token not in refused.err


def test_runner_runs_the_pipeline_in_a_kaggle_layout(run_cli, tmp_path):
    # A folder laid out like a Kaggle kernel: the competition's files and the unpacked source dataset
    # under input/, an empty working/. The bundled runner runs there for real with the quick preset,
    # kept tiny by pipeline options passed through it.
    bundle = tmp_path / "b"
    assert (
        run_cli("kernel", "bundle", "--out", bundle, "--user", "erin", "--preset", "quick", "--models", "mlp").code == 0
    )
    root = tmp_path / "kaggle"
    competition = make_slice(root / "input" / "digit-recognizer", 600, 200)
    solution = (competition / "solution.csv").replace(tmp_path / "solution.csv")  # Kaggle gives no test labels
    source = root / "input" / "kaggle-digits-src"
    shutil.copytree(bundle / "dataset" / "kaggle_digits", source / "kaggle_digits")
    working = root / "working"
    working.mkdir()
    # Kaggle mounts the inputs read-only (a root test process writes through the modes: the snapshot of
    # the input tree below checks that nothing was written there either).
    for path in (root / "input").rglob("*"):
        path.chmod(0o555 if path.is_dir() else 0o444)
    (root / "input").chmod(0o555)
    inputs_before = {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in (root / "input").rglob("*")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_DIGITS_")}
    env.update(KAGGLE_DIGITS_KAGGLE_ROOT=str(root), KAGGLE_KERNEL_RUN_TYPE="Batch")
    tiny = ["--subsample", "600", "--epochs", "5", "--folds", "2", "--trials", "1", "--fold-jobs", "1"]
    proc = subprocess.run(
        [sys.executable, str(bundle / "kernel" / RUNNER_NAME), *tiny],
        cwd=working,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"from {source / 'kaggle_digits'}" in proc.stdout, "the bundled source is the one that runs"
    assert f"pipeline --preset quick --models mlp --data-dir {competition} --subsample 600" in proc.stdout
    assert f"{competition}: train.csv and test.csv already present and valid" in proc.stdout, "read where mounted"

    labels = submission.read_submission(working / "submission.csv", n_test=200)
    truth = submission.read_submission(solution)
    assert (labels == truth).mean() > 0.4, "real predictions (chance is 0.1)"
    record = json.loads((working / "kaggle-digits-run.json").read_text())
    assert (working / "submissions" / record["submission"]).read_bytes() == (working / "submission.csv").read_bytes()
    # The kernel's output is the submission, its record, the report and the run's files: no copy of the
    # competition's CSVs (they would be downloaded back with the output), nothing written into input/.
    assert not [p for p in working.rglob("*.csv") if p.name in ("train.csv", "test.csv", "sample_submission.csv")]
    assert not (working / "data").exists()
    assert {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in (root / "input").rglob("*")} == inputs_before
    index = (working / "reports" / "index.html").read_text()
    pngs = sorted((working / "reports").glob("*.png"))
    assert pngs and all(p.name in index for p in pngs), "the run's plots, for `kernel.py output` to bring back"


# --- accelerators, quota, live log, submit from the output ---------------------------------------------


def test_push_on_cpu_asks_no_quota_and_no_gpu(run_cli, fake_kaggle, tmp_path):
    result = run_cli("kernel", "push", "--out", tmp_path / "b", "--accelerator", "none")
    assert result.code == 0, result.err
    assert fake_kaggle.calls("GetAcceleratorQuotaStatistics") == [] and "GPU quota" not in result.out
    (save,) = fake_kaggle.calls("SaveKernel")
    assert save.body["enableGpu"] is False and not save.body.get("machineShape")
    assert "CPU" in result.out


def test_push_refused_when_the_plan_does_not_fit_the_quota(run_cli, fake_kaggle, tmp_path):
    fake_kaggle.gpu_seconds_used = fake_kaggle.gpu_seconds_allowed - 1800  # half an hour left
    fake_kaggle.gpu_seconds_reserved = 600  # ten minutes of it held by a session running now
    out = tmp_path / "b"
    result = run_cli("kernel", "push", "--out", out, "--preset", "standard")
    assert_one_line_error(result, "--preset standard", "1h00m", "20m", "nothing was uploaded", "2026-12-12 00:00")
    assert "GPU quota left this week: 20m00s of 30h00m (10m00s held by sessions running now)" in result.out
    for route in ("CreateDataset", "StartBlobUpload", "SaveKernel"):
        assert fake_kaggle.calls(route) == [], route
    assert not out.exists(), "refused before the bundle is written"
    # The quick preset's plan fits in what is left.
    assert run_cli("kernel", "push", "--out", out, "--preset", "quick").code == 0
    assert len(fake_kaggle.calls("SaveKernel")) == 1
    # With nothing left, even a run of no set length (families tuned by their presets) is refused.
    fake_kaggle.gpu_seconds_used = fake_kaggle.gpu_seconds_allowed
    refused = run_cli("kernel", "push", "--out", out, "--models", "mlp,dense")
    assert_one_line_error(refused, "a GPU kernel", "0s of GPU time", "--accelerator none")


@pytest.mark.parametrize("breakage", ["500", "404", "old client"])
def test_push_goes_on_when_the_quota_cannot_be_read(run_cli, fake_kaggle, tmp_path, monkeypatch, breakage):
    if breakage == "old client":
        # A client older than 2.2.1 has no quota_view. (`kaggle.api` is an instance, so the module is found
        # by name; importing it now is safe: the fixture has planted credentials.)
        client = importlib.import_module("kaggle.api.kaggle_api_extended")
        monkeypatch.delattr(client.KaggleApi, "quota_view")
        reason = "cannot ask; 2.2.1+ can"
    else:
        fake_kaggle.fail(int(breakage), "quota service down", "GetAcceleratorQuotaStatistics")
        reason = f"Kaggle answered {breakage}"
    result = run_cli("kernel", "push", "--out", tmp_path / "b")
    assert result.code == 0, result.err
    (line,) = [line for line in result.out.splitlines() if line.startswith("GPU quota")]
    assert line.startswith("GPU quota left this week: unknown (") and reason in line
    assert len(fake_kaggle.calls("SaveKernel")) == 1


def _log(*lines: str) -> str:
    """A session log as Kaggle keeps it: a JSON list of events."""
    return json.dumps([{"stream_name": "stdout", "time": i, "data": line + "\n"} for i, line in enumerate(lines)])


def test_logs_and_status_wait_show_the_running_kernels_log(run_cli, fake_kaggle, tmp_path, monkeypatch):
    assert run_cli("kernel", "push", "--out", tmp_path / "b").code == 0
    fake_kaggle.kernel_log = _log("plan for 10m00s: 4 folds", "epoch 1/8")
    once = run_cli("kernel", "logs")
    assert once.code == 0, once.err
    assert once.out.splitlines() == ["plan for 10m00s: 4 folds", "epoch 1/8"]
    (asked,) = fake_kaggle.calls("ListKernelSessionOutput")
    assert (asked.body["userName"], asked.body["kernelSlug"]) == ("kdtester", "kaggle-digits")

    # status --wait: while the session runs, its live log, each line once (the stream replays from the start).
    fake_kaggle.kernel_statuses = ["QUEUED", "RUNNING", "RUNNING", "COMPLETE"]
    fake_kaggle.kernel_log_events = [{"stream_name": "stdout", "time": 0, "data": "plan for 10m00s\n"}]
    monkeypatch.setattr(
        "kaggle_digits.kaggle.api.time.sleep",
        lambda seconds: fake_kaggle.kernel_log_events.append(
            {"stream_name": "stdout", "time": 1, "data": f"epoch {len(fake_kaggle.kernel_log_events)}/8\n"}
        ),
    )
    waited = run_cli("kernel", "status", "--wait", "--poll", "5")
    assert waited.code == 0, waited.err
    lines = [line.split("  ")[0] for line in waited.out.splitlines()]
    assert lines == [
        "kdtester/kaggle-digits: queued",
        "kdtester/kaggle-digits: running",
        "plan for 10m00s",
        "epoch 1/8",
        "epoch 2/8",
        "kdtester/kaggle-digits: complete",
        "fetch the result with `python scripts/kernel.py output`",
    ]
    assert len(fake_kaggle.calls("LogsStream")) == 2


def test_logs_follow_streams_the_session(run_cli, fake_kaggle, tmp_path, monkeypatch):
    assert run_cli("kernel", "push", "--out", tmp_path / "b").code == 0
    monkeypatch.setattr("kaggle_digits.kaggle.api.time.sleep", lambda seconds: None)
    fake_kaggle.kernel_log_events = [{"stream_name": "stdout", "time": i, "data": f"epoch {i}/3\n"} for i in (1, 2, 3)]
    fake_kaggle.stream_breaks = 2  # cut twice mid-stream: opened again, and no line is shown twice
    live = run_cli("kernel", "logs", "--follow")
    assert live.code == 0, live.err
    assert live.out.splitlines() == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    streams = fake_kaggle.calls("LogsStream")
    assert len(streams) == 3 and all(r.authorized for r in streams)
    assert streams[0].path == "/v1/kernels/logs/stream/kdtester/kaggle-digits"

    fake_kaggle.kernel_running = False  # a finished session: its whole log at once
    done = run_cli("kernel", "logs", "--follow")
    assert done.code == 0 and done.out.splitlines() == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]

    fake_kaggle.kernel_running, fake_kaggle.stream_breaks, fake_kaggle.stream_break_after = True, 99, 0
    assert_one_line_error(run_cli("kernel", "logs", "--follow"), "broke 5 times", "network")


@pytest.mark.parametrize("breakage", ["500", "404", "old client"])
def test_log_that_cannot_be_read_is_one_line(run_cli, fake_kaggle, tmp_path, monkeypatch, breakage):
    assert run_cli("kernel", "push", "--out", tmp_path / "b").code == 0
    if breakage == "old client":
        client = importlib.import_module("kaggle.api.kaggle_api_extended")
        monkeypatch.delattr(client.KaggleApi, "kernels_logs")
        monkeypatch.delattr(client.KaggleApi, "kernels_logs_stream")
        words = ["cannot read a kernel's log", "2.2.5+ can"]
    else:
        fake_kaggle.fail(int(breakage), "log service down", "ListKernelSessionOutput")
        fake_kaggle.fail(int(breakage), "log service down", "LogsStream")
        words = [breakage] if breakage == "500" else ["not found"]
    for follow in ([], ["--follow"]):
        assert_one_line_error(run_cli("kernel", "logs", *follow), *words)
    # status --wait says once that the log is not shown, and goes on waiting for the end.
    fake_kaggle.kernel_statuses = ["RUNNING", "RUNNING", "COMPLETE"]
    monkeypatch.setattr("kaggle_digits.kaggle.api.time.sleep", lambda seconds: None)
    waited = run_cli("kernel", "status", "--wait", "--poll", "5")
    assert waited.code == 0, waited.err
    assert waited.out.count("the kernel's log is not shown") == 1
    assert "kdtester/kaggle-digits: complete" in waited.out


def _kernel_submission(fake_kaggle, data_dir: Path, tmp_path: Path) -> bytes:
    truth = submission.read_submission(data_dir / "solution.csv")
    path = submission.write_submission(tmp_path / "kernel-submission.csv", truth)
    record = {"submission": "20260101-000000-ensemble-cv0.99100.csv"}
    fake_kaggle.kernel_outputs = {
        "submission.csv": path.read_bytes(),
        "kaggle-digits-run.json": json.dumps(record).encode(),
    }
    return path.read_bytes()


def test_output_submit_uploads_as_submit_does(run_cli, fake_kaggle, small_data_copy, tmp_path):
    out, subs = tmp_path / "b", tmp_path / "submissions"
    folders = ["--data-dir", small_data_copy, "--submissions-dir", subs]
    assert_one_line_error(run_cli("kernel", "output", "--out", out, "--submit", *folders), "--submit needs -m")
    assert_one_line_error(run_cli("kernel", "output", "--out", out, "-m", "x", *folders), "add --submit")
    assert fake_kaggle.requests == []
    assert run_cli("kernel", "push", "--out", out).code == 0
    content = _kernel_submission(fake_kaggle, small_data_copy, tmp_path)
    fake_kaggle.submitted_earlier_today = 1

    result = run_cli("kernel", "output", "--out", out, "--submit", "-m", "from the T4s", *folders)
    assert result.code == 0, result.err
    (written,) = subs.glob("*-kernel-cv0.99100.csv")
    assert "submissions left today: 4 (1 made since 00:00 UTC)" in result.out
    assert "local leaderboard" not in result.out, "Kaggle's test rows are not the mirror's"
    (uploaded,) = fake_kaggle.submissions
    assert uploaded.content == content and uploaded.description == "from the T4s"
    assert uploaded.file_name == written.name
    routes = [r.route for r in fake_kaggle.requests]
    assert routes.index("GetSubmissionLimits") < routes.index("StartSubmissionUpload")
    copied, sent = submission.read_history(subs / "history.csv")
    assert "kernel" in copied["message"] and sent["message"] == "from the T4s"
    assert sent["file"] == str(written) and sent["cv_accuracy"] == "0.99100"

    # None left today: the output is still fetched and kept, nothing is uploaded.
    fake_kaggle.submitted_earlier_today = fake_kaggle.daily_limit
    (subs / written.name).unlink()
    refused = run_cli("kernel", "output", "--out", out, "--submit", "-m", "again", *folders)
    assert_one_line_error(refused, "no submissions left", "nothing was uploaded")
    assert len(fake_kaggle.submissions) == 1 and len(fake_kaggle.calls("StartSubmissionUpload")) == 1


def test_refused_credentials_on_the_quota_stop_the_push(run_cli, fake_kaggle, tmp_path):
    # A 401 is the credentials' fault, not an unreadable quota: one line, as for an upload, nothing sent.
    fake_kaggle.fail(401, "Unauthenticated", "GetAcceleratorQuotaStatistics")
    assert_one_line_error(run_cli("kernel", "push", "--out", tmp_path / "b"), "401", "kaggle.json")
    assert fake_kaggle.calls("CreateDataset") == [] and fake_kaggle.calls("SaveKernel") == []
