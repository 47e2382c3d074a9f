"""The Ray executor on a real two-node cluster started on this machine (one CPU per node).

The cluster is ``ray start --head`` plus a second ``ray start --address`` node on 127.0.0.1, on
free ports and in a temporary folder, stopped (its process groups killed) when the module ends.
Every wait polls a condition with a deadline.
"""

import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import mlflow
import pytest

from ragkit.config import load_experiment
from ragkit.predictions_file import read_predictions
from ragkit.recording import Recorder
from ragkit.runner import run_experiment
from tests.conftest import assert_same_results

ray = pytest.importorskip("ray")
from ragkit.executors.ray import RayExecutor  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
HOOK = "tests.ray_hooks.slow_scripted_generation"


def wait_for(condition, what, deadline=120.0):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.05)  # polling interval
    raise AssertionError(f"timed out after {deadline:.0f} s waiting for {what}")


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def port_open(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def alive(process, log):
    """False while a node's process runs; its log in the failure when it exited."""
    if process.poll() is not None:
        raise AssertionError(f"ray start exited with {process.returncode}:\n{log.read_text()[-3000:]}")
    return False


def node_ports():
    """Free ports for one node's services (workers pick random ones of their own)."""
    manager, objects, agent, grpc, metrics, env_agent = free_ports(6)
    return [
        f"--node-manager-port={manager}",
        f"--object-manager-port={objects}",
        f"--dashboard-agent-listen-port={agent}",
        f"--dashboard-agent-grpc-port={grpc}",
        f"--metrics-export-port={metrics}",
        f"--runtime-env-agent-port={env_agent}",
    ]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ray")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
        "RAY_USAGE_STATS_ENABLED": "0",
        # a loopback-only test cluster: no token (Ray 2.60 otherwise shares one through ~/.ray,
        # which a local cluster started elsewhere on this machine may have written or replaced)
        "RAY_AUTH_MODE": "disabled",
    }
    driver_auth = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"  # this process is the driver
    common = [
        "--block",
        "--num-cpus=1",
        "--num-gpus=0",
        "--node-ip-address=127.0.0.1",
        "--disable-usage-stats",
    ]
    common.append("--object-store-memory=100000000")
    [gcs] = free_ports(1)
    address = f"127.0.0.1:{gcs}"
    head_command = ["ray", "start", "--head", f"--port={gcs}"]
    head_command += ["--include-dashboard=false", f"--temp-dir={tmp / 'session'}", *common, *node_ports()]
    second_command = ["ray", "start", f"--address={address}", *common, *node_ports()]
    processes = []
    try:
        for command in (head_command, second_command):
            log = open(tmp / f"node{len(processes)}.log", "w")  # noqa: SIM115 (closed with the group)
            processes.append(
                subprocess.Popen(
                    command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
            )
            if len(processes) == 1:
                wait_for(lambda: port_open(gcs) or alive(processes[0], tmp / "node0.log"), "the GCS port")
        ray.init(address=address)
        try:
            wait_for(lambda: sum(n["Alive"] for n in ray.nodes()) == 2, "two live nodes")
        finally:
            ray.shutdown()
        yield SimpleNamespace(address=address, tmp=tmp)
    finally:
        if driver_auth is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = driver_auth
        # `ray start --block` runs its node's processes in the session it was started in: killing
        # that process group stops the node (SIGTERM alone lets it linger ~30 s)
        for process in processes:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        wait_for(lambda: not _session_processes(processes), "the nodes' processes to exit", deadline=60)


def _session_processes(processes):
    """Processes still in the sessions the nodes were started in."""
    sessions = {p.pid for p in processes}
    left = []
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) in sessions and fields[0] != "Z":  # session id, state (zombies are done)
            left.append(entry.name)
    return left


def on_ray(spec, tmp_path, name):
    return {
        **spec,
        "output_dir": str(tmp_path / f"{name}-runs"),
        "cache_dir": str(tmp_path / f"{name}-cache"),
        "tracking_uri": f"sqlite:///{tmp_path / f'{name}-mlflow.db'}",
    }


def test_two_nodes_run_units_and_give_the_local_results(cluster, experiment_dict, tmp_path):
    from ragkit.cache import Cache

    reference = run_experiment(load_experiment(experiment_dict))
    executor = RayExecutor(address=cluster.address, worker_cache_dir=str(tmp_path / "node-cache"))
    spec = on_ray(experiment_dict, tmp_path, "ray")
    results = run_experiment(load_experiment(spec), executor=executor)
    assert_same_results(reference, results)
    assert len({u["node"] for u in executor.units_}) == 2  # both nodes ran units
    assert len(executor.units_) == 10  # 1 shared retrieval + 3 configurations x 3 batches
    # the node that is not the driver's cached on its own disk and sent its entries back
    assert (tmp_path / "node-cache" / "cache.sqlite").exists()
    local, driver = Cache(experiment_dict["cache_dir"]), Cache(spec["cache_dir"])
    for stage in ("retrieval", "generation"):
        assert driver.count(stage) == local.count(stage) > 0


def test_a_worker_killed_mid_sweep_loses_and_duplicates_nothing(cluster, experiment_dict, tmp_path):
    reference = run_experiment(load_experiment(experiment_dict))
    markers = tmp_path / "markers"
    markers.mkdir()
    runtime_env = {"worker_process_setup_hook": HOOK, "env_vars": {"RAGKIT_TEST_MARKERS": str(markers)}}
    executor = RayExecutor(
        address=cluster.address, worker_cache_dir=str(tmp_path / "node-cache"), runtime_env=runtime_env
    )
    spec = on_ray(experiment_dict, tmp_path, "fault")
    outcome = {}

    def sweep():
        try:
            outcome["results"] = run_experiment(load_experiment(spec), executor=executor)
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=sweep)
    thread.start()
    victim = int(wait_for(lambda: next(iter(os.listdir(markers)), None), "a unit running on a worker"))
    os.kill(victim, signal.SIGKILL)  # mid-unit: the marker is written before the simulated work
    thread.join(timeout=300)
    assert not thread.is_alive() and "error" not in outcome, outcome.get("error")
    results = outcome["results"]
    assert_same_results(reference, results)
    assert len(set(os.listdir(markers)) - {str(victim)}) >= 2  # a restarted process took over
    for result in results:
        lines = (result.run_dir / "predictions.jsonl").read_text().splitlines()
        assert len(lines) == 6 and len(read_predictions(result.run_dir / "predictions.jsonl")) == 6
    client = mlflow.MlflowClient(spec["tracking_uri"])
    experiment = client.get_experiment_by_name("test-exp")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("ragkit.role") == "parent"]
    children = [r for r in runs if r.data.tags.get("ragkit.role") == "configuration"]
    assert len(parents) == 1 and len(children) == 3 and len(runs) == 4
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert sorted(r.data.tags["ragkit.config_hash"] for r in children) == sorted(
        r.configuration.hash for r in results
    )


def test_ctrl_c_stops_the_cluster_work_and_the_run_resumes(cluster, experiment_dict, tmp_path, monkeypatch):
    spec = on_ray(experiment_dict, tmp_path, "interrupted")
    original = Recorder.record
    calls = {"n": 0}

    def interrupted(self, result):
        calls["n"] += 1
        if calls["n"] == 6:  # the retrieval unit and four batches came back, then Ctrl-C
            raise KeyboardInterrupt
        return original(self, result)

    monkeypatch.setattr(Recorder, "record", interrupted)
    executor = RayExecutor(address=cluster.address, worker_cache_dir=str(tmp_path / "node-cache"))
    with pytest.raises(KeyboardInterrupt):
        run_experiment(load_experiment(spec), executor=executor)
    assert not ray.is_initialized()  # the driver disconnected
    runs = Path(spec["output_dir"]) / "test-exp"
    kept = sum(len(read_predictions(p)) for p in runs.glob("*/predictions.jsonl"))
    # results come back in any order and are written in plan order: with two workers at most one
    # unit can hold back a configuration's later batches, so some batches are on disk
    assert 2 <= kept < 18
    monkeypatch.setattr(Recorder, "record", original)
    # every actor of the interrupted run was killed: otherwise the two CPUs stay taken and the
    # resumed run's actors could not start
    results = run_experiment(load_experiment(spec), executor=executor)
    assert sum(r.generated for r in results) == 18 - kept  # only what was not on disk
    reference = run_experiment(load_experiment(experiment_dict))
    assert_same_results(reference, results)


def test_worker_resources_follow_the_generator_unless_set():
    from ragkit.config import ConfigError
    from ragkit.registry import build

    auto = build("generator", "transformers", {"model": "smollm2"})
    cuda = build("generator", "transformers", {"model": "smollm2", "device": "cuda"})
    scripted = build("generator", "scripted")
    cpu_only, with_gpus = {"CPU": 8.0}, {"CPU": 8.0, "GPU": 2.0}
    executor = RayExecutor()
    assert executor.resources(auto, cpu_only) == {"num_cpus": 1.0, "num_gpus": 0.0}
    assert executor.resources(auto, with_gpus) == {"num_cpus": 1.0, "num_gpus": 1.0}
    assert executor.resources(scripted, with_gpus)["num_gpus"] == 0.0
    with pytest.raises(
        ConfigError, match="each worker needs 1 CPU and 1 GPU but the cluster has 8 CPU and 0 GPU"
    ):
        executor.resources(cuda, cpu_only)
    assert RayExecutor(num_cpus=2, num_gpus=0).resources(cuda, cpu_only) == {"num_cpus": 2.0, "num_gpus": 0.0}
    # as many workers as the cluster holds, never more than there are units
    assert executor._pool_size({"num_cpus": 1.0, "num_gpus": 1.0}, with_gpus, units=10) == 2
    assert executor._pool_size({"num_cpus": 3.0, "num_gpus": 0.0}, cpu_only, units=10) == 2
    assert executor._pool_size({"num_cpus": 1.0, "num_gpus": 0.0}, cpu_only, units=3) == 3
    assert RayExecutor(workers=5)._pool_size({"num_cpus": 1.0, "num_gpus": 0.0}, cpu_only, units=3) == 3
