"""Where the rules' sources are: public URLs of the upstream code, documents and issues that say
how each boot tool behaves.  docs/tools.md describes those behaviours in ociboot's words.

A rule's `sources` entry is `"<https URL>"` or `"<https URL> <label>"`, the label naming the part
meant (a function, a constant, a lint).  Code is cited at the commit that was read, so a link
keeps showing the behaviour a rule emulates after upstream moves on.
"""

from __future__ import annotations

import re


def _tree(repo: str, commit: str) -> str:
    return f"https://github.com/{repo}/blob/{commit}"


#: rancher/elemental-toolkit, Elemental v2 as of 2026-03-05 (E1-E17).
ELEMENTAL = _tree("rancher/elemental-toolkit", "185c18b588c206bc287f77f8d125c321ab7564cb")
ELEMENTAL_CONSTANTS = f"{ELEMENTAL}/pkg/constants/constants.go"
ELEMENTAL_COMMON = f"{ELEMENTAL}/pkg/utils/common.go"
ELEMENTAL_GRUB = f"{ELEMENTAL}/pkg/bootloader/grub.go"
ELEMENTAL_BOOTARGS = f"{ELEMENTAL}/pkg/features/embedded/grub-default-bootargs/etc/elemental/bootargs.cfg"
_FEATURES = f"{ELEMENTAL}/pkg/features/embedded"
ELEMENTAL_SETUP_MODULE = (
    f"{_FEATURES}/elemental-setup/usr/lib/dracut/modules.d/10elemental-setup/module-setup.sh"
)
ELEMENTAL_ROOTFS_MODULE = (
    f"{_FEATURES}/elemental-rootfs/usr/lib/dracut/modules.d/30elemental-rootfs/module-setup.sh"
)
#: rancher/elemental-toolkit tag v1.0.0: Elemental v1, elemental-cli's code merged in.
ELEMENTAL_V1 = _tree("rancher/elemental-toolkit", "17e4895c6a6863f7eb22b0c4fdddd2dc297f71b8")
ELEMENTAL_V1_COMMON = f"{ELEMENTAL_V1}/pkg/utils/common.go"
#: The same repository as cOS-toolkit, tag v0.8.14: the last luet-era packages.
COS_V0_8 = _tree("rancher/elemental-toolkit", "ee69c3696ab7403fe58fe39e71e6205a86cb073c")
COS_IMMUTABLE_ROOTFS = f"{COS_V0_8}/packages/immutable-rootfs/30cos-immutable-rootfs"
#: cOS-toolkit tag v0.5.8: the oldest packaged GRUB bootargs and upgrade script.
COS_V0_5 = _tree("rancher/elemental-toolkit", "4b34f28eb0f3eaa69612da032982d209c08e407c")
#: cOS-toolkit documentation of 2022 (D1-D11) and of 2021 (D12).
COS_DOCS = _tree("rancher/elemental-toolkit", "4f0025b9d549d4fbd640a154efc41f6a4131aa17")
COS_DOCS_2021 = _tree("rancher/elemental-toolkit", "1c5a3722ff92fe0eb7f1f286658de6ce4f8d4558")
#: The cOS page on what a derivative image must carry, in COS_DOCS.
COS_BOOTABLE_IMAGES = f"{COS_DOCS}/docs/content/en/docs/Creating%20derivatives/creating_bootable_images.md"
COS_PACKAGE_STACK = f"{COS_DOCS}/docs/content/en/docs/Creating%20derivatives/package_stack.md"
#: rancher/elemental: the operator's upgrade script.
RANCHER_ELEMENTAL = _tree("rancher/elemental", "d68640931471e7ec259e1e2ca02ee9c8a779b3f9")
#: kairos-io/kairos-init: `validate` (K1-K13), the kernel stage, package maps.
KAIROS_INIT = _tree("kairos-io/kairos-init", "ccd9c8929745047e2786763f10a1a12fd198ec1f")
#: The file every K-check lives in.
KAIROS_VALIDATE = f"{KAIROS_INIT}/pkg/validation/validate.go"
KAIROS_AGENT = _tree("kairos-io/kairos-agent", "96f93a04a554e30ad034ec9ee8bbf7b9ac242c5d")
KAIROS_AGENT_ELEMENTAL = f"{KAIROS_AGENT}/pkg/elemental/elemental.go"
AURORABOOT = _tree("kairos-io/AuroraBoot", "fa8512349ff2d5ad35ff23928ca5e6257e2a647f")
KAIROS_SDK = _tree("kairos-io/kairos-sdk", "14f5755093180960db1ac94be62bd9db2e32df61")
GO_VERSION = _tree("hashicorp/go-version", "8f84cf4e0c536ec09e197abb7dd32bebb3ee2390")
BOOTC = _tree("bootc-dev/bootc", "534c76ea474a356aa288f6767635e579ea2614d5")
BOOTC_LINTS = f"{BOOTC}/crates/lib/src/lints.rs"
BOOTC_IMAGES_DOC = f"{BOOTC}/docs/src/bootc-images.md"
OSBUILD_IMAGES = _tree("osbuild/images", "1146ec23cd9c5d4b8d161bde7f0827f8da7c8ded")
OSBUILD_OSINFO = f"{OSBUILD_IMAGES}/pkg/bib/osinfo/osinfo.go"
BIB_LEGACY_ISO = (
    _tree("osbuild/bootc-image-builder", "2cc5e958a1e14d0ee93cca293ddaf2607dc67363")
    + "/bib/cmd/bootc-image-builder/legacy_iso.go"
)
LUET = _tree("mudler/luet", "3f2397b6fccfb4e6721939e0b364245078642cdc")
TRIVY_RPM = (
    _tree("aquasecurity/trivy", "5e2526a500efdf6cfd58d84c7f631014f20e62c6")
    + "/pkg/fanal/analyzer/pkg/rpm/rpm.go"
)
TRIVY_DPKG = (
    _tree("aquasecurity/trivy", "4bc2b770b8df43f6f9d0bbffe96a8c0ded375980")
    + "/pkg/fanal/analyzer/pkg/dpkg/dpkg.go"
)
SYFT = _tree("anchore/syft", "0d40f440c763061ffcf15deb049e0c988c2fcab9")
LINUX_DECOMPRESS = _tree("torvalds/linux", "e4aa7ca5a2e6d44f07ceb87d9448113f5b48a334") + "/lib/decompress.c"
LINUX_ZBOOT = (
    _tree("torvalds/linux", "c7d9e628b8ff4d52a365a441bdacb3209ee83c81")
    + "/drivers/firmware/efi/libstub/zboot-header.S"
)
X86_BOOT_PROTOCOL = "https://docs.kernel.org/arch/x86/boot.html"
ARM64_BOOTING = "https://docs.kernel.org/arch/arm64/booting.html"
INITRAMFS_FORMAT = "https://docs.kernel.org/driver-api/early-userspace/buffer-format.html"
UKI_SPEC = (
    _tree("uapi-group/specifications", "ed66b52d813264daec0f930381c2abb1f6c82da9")
    + "/specs/unified_kernel_image.md"
)
PATH_RESOLUTION = "https://man7.org/linux/man-pages/man7/path_resolution.7.html"
OS_RELEASE = "https://man7.org/linux/man-pages/man5/os-release.5.html"
DRACUT_CONF = "https://manpages.debian.org/unstable/dracut-core/dracut.conf.5.en.html"


def issue(repo: str, number: int) -> str:
    """An issue or pull request (GitHub sends /issues/N of a pull request to /pull/N)."""
    return f"https://github.com/{repo}/issues/{number}"


#: What a source must look like: an https URL without spaces, then an optional label.
SOURCE = re.compile(r"(?P<url>https://[^\s<>()]+)(?: (?P<label>\S.*))?")
_GITHUB = re.compile(
    r"https://github\.com/(?P<repo>[^/]+/[^/]+)/(?:blob/(?P<ref>[^/]+)/(?P<path>.+)|issues/(?P<issue>\d+))"
)


def link_text(url: str) -> str:
    """A short name for a source URL: "owner/repo path@commit", "owner/repo#N", or the URL
    without its scheme."""
    m = _GITHUB.fullmatch(url)
    if m is None:
        return url.removeprefix("https://")
    if m["issue"]:
        return f"{m['repo']}#{m['issue']}"
    return f"{m['repo']} {m['path'].replace('%20', ' ')}@{m['ref'][:9]}"
