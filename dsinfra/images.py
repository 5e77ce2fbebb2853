"""Which container image a node's engine runs, and where it comes from (pure: no AWS, no SSH).

A stack's nodes never pull the engine image anonymously from Docker Hub: Docker Hub allows 10
anonymous pulls per hour per IPv4 address ("Usage and limits", docs.docker.com), and every node
behind one NAT gateway shares that address. The first node of an account and region builds or
copies the image into the account's own ECR repository ``dsinfra/<engine>``; every other node
pulls it from there (``cloud/engine_image.py`` on the node, the ``engine-image`` bootstrap step).

On nodes with EFA the image is a derived one, built as AWS builds its own Deep Learning
Containers for vLLM and SGLang (aws/deep-learning-containers docker/vllm/Dockerfile and
scripts/docker/common/install_efa.sh): FROM the engine image, the EFA installer run inside the
image with ``--skip-kmod --skip-limit-conf --no-verify`` (user space only: the kernel module is
the host's), its libraries first on ``LD_LIBRARY_PATH``, and ``NCCL_NET_PLUGIN=ofi`` because
installers from 1.44 name the plugin ``libnccl-net-ofi.so`` and NCCL opens only
``libnccl-net.so`` without it (NVIDIA/nccl src/plugin/plugin_open.cc). The EFA user space works
only as a set (libfabric with the installer's own rdma-core and efa provider: vllm-project/vllm
tools/install_efa_userspace.sh), which is why it is installed into the image rather than
mounted from the host.

Why not AWS's own DLC images: they ship EFA, but only for the engine versions AWS builds
(vLLM 0.13.0 onward in its docs/src/data/vllm/*-gpu-ec2.yml, SGLang 0.5.9 onward), with CUDA
12.9/13.0 builds; dsinfra's pinned engines (dsinfra/engines.py) are older, and a user's own
``engineImage`` has none. Deriving from whatever image the stack names covers all of them.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

# What AWS's vLLM DLC pins (aws/deep-learning-containers .github/config/image/vllm/
# ec2-ubuntu.yml, efa_version "1.47.0"); from 1.44 the plugin is lib/libnccl-net-ofi.so on
# Ubuntu (scripts/docker/common/install_efa.sh check_libnccl_net_so).
EFA_IMAGE_INSTALLER = "1.47.0"
EFA_INSTALLER_FLAGS = ("-y", "--skip-kmod", "--skip-limit-conf", "--no-verify")
EFA_INSTALLER_URL = "https://efa-installer.amazonaws.com/aws-efa-installer-{version}.tar.gz"
# The DLC Dockerfile's library path, less Open MPI (an engine needs none).
EFA_IMAGE_ENV = (
    ("LD_LIBRARY_PATH", "/opt/amazon/ofi-nccl/lib:/opt/amazon/efa/lib:${LD_LIBRARY_PATH}"),
    ("PATH", "/opt/amazon/efa/bin:${PATH}"),
    ("NCCL_NET_PLUGIN", "ofi"),
)
ECR_REPOSITORY_PREFIX = "dsinfra/"  # the node role may push and pull only under it
LOCAL_PREFIX = "dsinfra-local/"  # the name a node tags the image with; the unit runs this


@dataclass(frozen=True)
class ImagePlan:
    """The engine image as a node runs it."""

    upstream: str  # what the stack names (engine default or engineImage)
    efa_layer: bool  # derived: the EFA user space installed into it
    repository: str  # dsinfra/<engine> in the account's ECR
    tag: str  # the tag there, from the upstream and the layer
    dockerfile: str | None  # the derived image's Dockerfile; None for a plain copy

    @property
    def local(self) -> str:
        """The name the engine's unit runs (``docker tag``-ged on each node)."""
        return f"{LOCAL_PREFIX}{self.repository.removeprefix(ECR_REPOSITORY_PREFIX)}:{self.tag}"

    def to_dict(self) -> dict:
        return {"upstream": self.upstream, "ecr_repository": self.repository, "tag": self.tag,
                "runs": self.local,
                "efa_layer": ({"installer": EFA_IMAGE_INSTALLER,
                               "flags": list(EFA_INSTALLER_FLAGS),
                               "env": [name for name, _ in EFA_IMAGE_ENV]}
                              if self.efa_layer else None)}


def efa_dockerfile(upstream: str) -> str:
    """The derived image: the engine image plus the EFA user space, as the DLCs build it."""
    url = EFA_INSTALLER_URL.format(version=EFA_IMAGE_INSTALLER)
    env = " \\\n    ".join(f'{name}="{value}"' for name, value in EFA_IMAGE_ENV)
    return (f"FROM {upstream}\n"
            "RUN set -eux; apt-get update; "
            "apt-get install -y --no-install-recommends curl ca-certificates; "
            "mkdir /tmp/efa; cd /tmp/efa; "
            f"curl -fsSLO {url}; "
            f"tar -xf aws-efa-installer-{EFA_IMAGE_INSTALLER}.tar.gz; "
            f"cd aws-efa-installer; ./efa_installer.sh {' '.join(EFA_INSTALLER_FLAGS)}; "
            "cd /; rm -rf /tmp/efa /var/lib/apt/lists/*; ldconfig; "
            "test -f /opt/amazon/ofi-nccl/lib/libnccl-net-ofi.so\n"
            f"ENV {env}\n")


def image_plan(engine: str, upstream: str, *, efa: bool) -> ImagePlan:
    """Where a node's engine image comes from: the upstream copied (no EFA) or derived (EFA)
    into ``dsinfra/<engine>`` under a tag that names both, so a new upstream or installer is a
    new tag and an old node never runs a half-updated image."""
    dockerfile = efa_dockerfile(upstream) if efa else None
    last = upstream.split("@", 1)[0].rsplit("/", 1)[-1]  # a registry's :port is not a tag
    version = last.split(":", 1)[1] if ":" in last else "latest"
    digest = hashlib.sha256((dockerfile or upstream).encode()).hexdigest()[:12]
    readable = re.sub(r"[^A-Za-z0-9_.-]", "-", version)[:80]
    tag = f"{readable}-{'efa' + EFA_IMAGE_INSTALLER if efa else 'copy'}-{digest}"
    return ImagePlan(upstream=upstream, efa_layer=efa,
                     repository=f"{ECR_REPOSITORY_PREFIX}{engine}", tag=tag,
                     dockerfile=dockerfile)
