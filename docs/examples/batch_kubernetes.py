"""Run ``lungai batch`` on Kubernetes: dask-kubernetes' operator starts the Dask scheduler and workers as pods.

Run this in a pod of the cluster (a Job, or a notebook pod) whose image has LungAI and the
``dask-kubernetes`` package, and which mounts the volume claim that holds the inputs and the
batch folder at ``--mount``. The workers get the same image and the same claim at the same path,
so paths mean the same everywhere. Needs the Dask Kubernetes operator in the cluster
(``helm install --repo https://helm.dask.org --create-namespace -n dask-operator --generate-name
dask-kubernetes-operator``) and ``pip install dask-kubernetes`` here (not a LungAI dependency).
Every option after ``--`` goes to ``lungai batch`` unchanged. Rerunning resumes the batch.

Example::

    python docs/examples/batch_kubernetes.py /data/cohort/cases.csv -o /data/cohort/out \
        --image registry.example.org/lungai:0.9 --claim lungai-data --mount /data --workers 20 \
        -- --tasks lungs,emphysema
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
from typing import Any

logger = logging.getLogger("batch_kubernetes")

MISSING = ("dask-kubernetes is not installed: `pip install dask-kubernetes` in the environment that runs this "
           "script, and install the Dask operator in the cluster (https://kubernetes.dask.org)")


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    """This script's options, and the options after ``--`` that go to ``lungai batch``."""
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="Options after -- are passed to `lungai batch`.")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="what `lungai batch` takes: folders, CSVs, globs")
    parser.add_argument("-o", "--output", required=True, help="the batch folder, on the shared volume")
    parser.add_argument("--image", required=True, help="container image with LungAI and its weights")
    parser.add_argument("--claim", required=True, help="PersistentVolumeClaim (ReadWriteMany) with inputs and output")
    parser.add_argument("--mount", default="/data", help="where the claim is mounted, here and in workers (/data)")
    parser.add_argument("--workers", type=int, default=4, help="worker pods (default 4)")
    parser.add_argument("--cpu", default="1", help="CPU request and limit per worker pod (default 1)")
    parser.add_argument("--memory", default="4Gi", help="memory request and limit per worker pod (default 4Gi)")
    parser.add_argument("--namespace", default=None, help="Kubernetes namespace (default: this pod's)")
    parser.add_argument("--name", default="lungai-batch", help="DaskCluster name (default lungai-batch)")
    return parser.parse_args(argv[:split]), argv[split + 1:]


def cluster_spec(args: argparse.Namespace, make_cluster_spec: Any) -> dict[str, Any]:
    """The DaskCluster resource: the operator's default spec, plus resources and the shared volume on workers.

    Each worker runs one case at a time (``--nthreads 1``) on one core (Dask's nanny starts it with
    ``OMP_NUM_THREADS=1``, so torch uses one thread: more CPU per pod would sit idle) and gets its
    memory limit from the pod's, so Dask restarts a worker that runs out and retries its case on
    another.
    """
    resources = {"requests": {"cpu": args.cpu, "memory": args.memory},
                 "limits": {"cpu": args.cpu, "memory": args.memory}}
    spec = make_cluster_spec(name=args.name, image=args.image, n_workers=args.workers, resources=resources,
                             worker_command=["dask-worker", "--nthreads", "1"])
    volume = {"name": "lungai-data", "persistentVolumeClaim": {"claimName": args.claim}}
    worker_pod = spec["spec"]["worker"]["spec"]
    worker_pod.setdefault("volumes", []).append(volume)
    for container in worker_pod["containers"]:
        container.setdefault("volumeMounts", []).append({"name": "lungai-data", "mountPath": args.mount})
    return spec


def start_cluster(args: argparse.Namespace) -> Any:
    """A dask_kubernetes.operator KubeCluster made from :func:`cluster_spec`.

    Raises:
        SystemExit: dask-kubernetes is not installed.
    """
    try:
        from dask_kubernetes.operator import KubeCluster, make_cluster_spec
    except ImportError:
        raise SystemExit(MISSING) from None
    return KubeCluster(custom_cluster_spec=cluster_spec(args, make_cluster_spec), namespace=args.namespace)


def batch_command(args: argparse.Namespace, scheduler: str, extra: list[str]) -> list[str]:
    """``lungai batch`` with this Python, on the cluster at ``scheduler``."""
    return [sys.executable, "-m", "lungai.cli", "batch", *args.inputs, "-o", args.output,
            "--scheduler", scheduler, *extra]


def main(argv: list[str] | None = None) -> int:
    """Start the cluster, run the batch on it, delete the cluster; the batch's exit code."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args, extra = parse_args(argv)
    cluster = start_cluster(args)
    try:
        command = batch_command(args, cluster.scheduler_address, extra)
        logger.info("running: %s", " ".join(command))
        return subprocess.call(command)
    finally:
        cluster.close()


if __name__ == "__main__":
    sys.exit(main())
