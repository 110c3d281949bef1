"""Where runs that train go on Kubernetes: the `dagster-k8s/config` run tag that dagster-k8s's K8sRunLauncher reads.

The definitions' executor runs every step in the run's own process, so the run's pod is where training happens: a
job that trains carries this tag, which puts its pod on the GPU node pool with a GPU and the shared memory NCCL and
torch need. Outside Kubernetes (the default run launcher, `mlops run`) the tag is only a label on the run. A launch
may replace it (the launchpad's tags), e.g. to ask for N GPUs for `processes: N` on `device: cuda`.
"""

from __future__ import annotations

import json

K8S_CONFIG_TAG = "dagster-k8s/config"
# Names the node pool a run's pod asks for, so the run queue can limit how many runs wait for GPUs at once
# (deployments/k8s/values.yaml: tagConcurrencyLimits).
NODE_POOL_TAG = "mlops/node-pool"
# The GKE node pool of GPU machines that deployments/k8s/README.md creates; GKE labels every node with its pool.
GPU_NODE_POOL = "gpu-training"
GPUS_PER_RUN = 1


def gpu_training_pod(gpus: int = GPUS_PER_RUN) -> dict:
    """The `dagster-k8s/config` value (keys as dagster-k8s reads them; Kubernetes fields in snake case) of a run pod
    with `gpus` GPUs on the GPU node pool."""
    return {
        "container_config": {
            "resources": {
                # An L4 machine (g2-standard-8: 8 vCPU, 32 GB) with room left for the node's own daemons.
                "requests": {"cpu": "6", "memory": "24Gi"},
                "limits": {"memory": "24Gi", "nvidia.com/gpu": str(gpus)},
            },
            "volume_mounts": [{"name": "dshm", "mount_path": "/dev/shm"}],
        },
        "pod_spec_config": {
            "node_selector": {"cloud.google.com/gke-nodepool": GPU_NODE_POOL},
            # GKE taints GPU nodes so that only pods that tolerate it (and ask for GPUs) land there.
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            # A container's /dev/shm is 64 MiB; NCCL between GPU processes and torch's tensor sharing need more.
            "volumes": [{"name": "dshm", "empty_dir": {"medium": "Memory", "size_limit": "8Gi"}}],
        },
    }


def training_run_tags() -> dict[str, str]:
    """Run tags of jobs that train: their pods go to the GPU node pool under the K8sRunLauncher."""
    return {K8S_CONFIG_TAG: json.dumps(gpu_training_pod(), sort_keys=True), NODE_POOL_TAG: GPU_NODE_POOL}
