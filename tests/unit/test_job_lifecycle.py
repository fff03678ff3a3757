"""The job lifecycle commands' pure parts: restore refusals, flink run flags, the jobs
table, the latest retained checkpoint, and the submit command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from onceflow.cli import _split_submit_args, build_parser
from onceflow.errors import OnceflowError
from onceflow.local.cluster import flink_run_command
from onceflow.local.jobs import (
    CheckpointRef,
    JobSummary,
    explain_restore_failure,
    latest_checkpoint,
    render_jobs,
)
from onceflow.local.rest import FlinkRest

# The client's output when the smoke job was submitted from a dedup savepoint (seen here).
UNMAPPED = (
    "Caused by: java.lang.IllegalStateException: Failed to rollback to checkpoint/savepoint "
    "file:/w/run/savepoints/savepoint-748ec6-6d2187de8855. Cannot map checkpoint/savepoint "
    "state for operator cdb2e7362686e1bebfc156bff26bfeb8 to the new program, because the "
    "operator is not available in the new program. If you want to allow to skip this, you "
    "can set the --allowNonRestoredState option on the CLI."
)


def test_an_unmapped_operator_is_explained_with_uids_and_the_flag_to_drop_it() -> None:
    text = explain_restore_failure(f"noise\n{UNMAPPED}\nmore noise")
    assert text is not None
    assert "operator cdb2e7362686e1bebfc156bff26bfeb8" in text
    assert "uid was changed or removed" in text and "--allow-non-restored-state" in text


def test_state_type_and_parallelism_refusals_are_explained_and_other_failures_are_not() -> None:
    migration = explain_restore_failure(
        "org.apache.flink.util.StateMigrationException: The new state serializer "
        "(ValueSerializer) must not be incompatible with the old state serializer"
    )
    assert migration is not None and "state type" in migration
    assert explain_restore_failure("java.net.ConnectException: Connection refused") is None
    assert explain_restore_failure("") is None


def test_flink_run_flags_for_a_resume_and_a_dropped_state() -> None:
    cli, job = ["flink"], Path("/x/jobs/dedup.py")
    assert flink_run_command(cli, "h:1", job, ["--a"]) == [
        "flink", "run", "-m", "h:1", "-py", "/x/jobs/dedup.py", "--a",
    ]  # fmt: skip
    resumed = flink_run_command(
        cli, "h:1", job, [], detached=True, savepoint="file:/sp", allow_non_restored_state=True
    )
    assert resumed[:9] == ["flink", "run", "-m", "h:1", "-d", "-s", "file:/sp", "-n", "-py"]
    # -n means nothing without a savepoint: it is left out.
    assert "-n" not in flink_run_command(cli, "h:1", job, [], allow_non_restored_state=True)


def test_submit_reads_its_options_on_either_side_of_the_job_file() -> None:
    parser = build_parser()
    args = parser.parse_args(
        ["cluster", "submit", "jobs/dedup.py", "--parallelism", "3", "--from-savepoint", "sp",
         "--", "--input-topic", "in", "--parallelism", "1"]
    )  # fmt: skip
    # The job's flags pass unchanged; submit's own --parallelism is appended after them.
    assert _split_submit_args(args) == ["--input-topic", "in", "--parallelism", "1"]
    assert (args.parallelism, args.from_savepoint) == (3, "sp")
    args = parser.parse_args(["cluster", "submit", "--detached", "jobs/dedup.py", "--", "--x"])
    assert _split_submit_args(args) == ["--x"] and args.detached
    with pytest.raises(SystemExit):
        parser.parse_args(
            ["cluster", "submit", "--from-savepoint", "a", "--from-latest-checkpoint", "b", "j"]
        )


def test_cluster_options_after_the_action_are_options() -> None:
    args = build_parser().parse_args(["cluster", "up", "--taskmanagers", "2"])
    assert args.taskmanagers == 2


def test_the_jobs_table_shows_state_parallelism_and_checkpoint_age() -> None:
    now = 1_000_000_000
    jobs = [
        JobSummary("a" * 32, "onceflow-dedup", "RUNNING", 3, now - 60_000, -1,
                   CheckpointRef(12, "file:/cp/chk-12", now - 4_000)),
        JobSummary("b" * 32, "old", "FINISHED", 2, now - 600_000, now - 500_000,
                   CheckpointRef(7, "file:/sp/savepoint-1", now - 300_000, savepoint=True)),
        JobSummary("c" * 32, "fresh", "RUNNING", None, now, -1, None),
    ]  # fmt: skip
    lines = render_jobs(jobs, now).splitlines()
    assert "RUNNING" in lines[1] and " 3 " in lines[1] and "#12 4 s ago" in lines[1]
    assert "savepoint 5 min ago  file:/sp/savepoint-1" in lines[2]
    assert lines[3].endswith("none")
    assert jobs[0].to_dict(now)["last_checkpoint"]["age_s"] == 4.0
    assert render_jobs([]) == "no jobs"


def test_the_latest_checkpoint_falls_back_to_the_checkpoint_folder(tmp_path: Path) -> None:
    # The JobManager no longer knows the job (an unreachable REST endpoint answers {}).
    rest = FlinkRest("http://127.0.0.1:9", timeout=0.5)
    jid = "f" * 32
    assert latest_checkpoint(rest, jid, tmp_path) is None
    for n in (3, 12, 7):
        (tmp_path / jid / f"chk-{n}").mkdir(parents=True)
        (tmp_path / jid / f"chk-{n}" / "_metadata").write_bytes(b"x")
    (tmp_path / jid / "chk-20").mkdir()  # an unfinished checkpoint: no _metadata
    ref = latest_checkpoint(rest, jid, tmp_path)
    assert ref is not None and ref.id == 12
    assert ref.path == (tmp_path / jid / "chk-12").as_uri()


def test_stop_and_cancel_name_the_job_or_refuse() -> None:
    from onceflow.local.jobs import resolve_job

    rest = FlinkRest("http://127.0.0.1:9", timeout=0.5)
    with pytest.raises(OnceflowError, match="no job running"):
        resolve_job(rest, None)
