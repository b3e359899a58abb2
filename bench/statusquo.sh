#!/usr/bin/env bash
# Variant (b), the Docker-free status quo: copy the image out of the registry, unpack it to a
# root filesystem, then answer the same questions as `ociboot check` with the usual tools.
#
#   bench/statusquo.sh IMAGE WORKDIR      IMAGE: docker://127.0.0.1:PORT/repo:tag
#
# Prints "written BYTES" (what skopeo and umoci left on disk) and the verdict, then removes
# everything it wrote.  Exit 0 bootable, 1 not.
set -euo pipefail
image=$1
work=$2
rm -rf "$work"
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT

skopeo copy --quiet --src-tls-verify=false "$image" "oci:$work/oci:v1"
rootless=()
[ "$(id -u)" -eq 0 ] || rootless=(--rootless)
umoci unpack "${rootless[@]}" --image "$work/oci:v1" "$work/bundle" >/dev/null
written=$(du -sb "$work" | cut -f1)
echo "written $written"

root=$work/bundle/rootfs
fail=0
# The boot links resolve, relative to the image root (a relative chain: readlink -f is safe here).
kernel=$(readlink -f "$root/boot/vmlinuz") || fail=1
initrd=$(readlink -f "$root/boot/initrd") || fail=1
file -b "$kernel" | grep -q 'Linux kernel x86 boot executable' || { echo "no kernel at /boot/vmlinuz"; fail=1; }
kver=$(file -b "$kernel" | sed -n 's/.*version \([^ ]*\) .*/\1/p')
file -b "$initrd" | grep -Eq 'Zstandard|gzip|XZ|cpio' || { echo "no initrd at /boot/initrd"; fail=1; }
[ -f "$root/usr/lib/modules/$kver/modules.dep" ] || { echo "no modules for $kver"; fail=1; }
# The initrd carries modules for the same kernel.
zstdcat "$initrd" 2>/dev/null | cpio -it --quiet 2>/dev/null | grep -q "usr/lib/modules/$kver/" \
  || { echo "initrd has no modules for $kver"; fail=1; }
packages=$(dpkg-query --admindir="$root/var/lib/dpkg" -W -f '${Package}\n')
for p in systemd "linux-image-$kver" grub-efi-amd64-bin dracut-core; do
  grep -qx "$p" <<<"$packages" || { echo "package $p missing"; fail=1; }
done
[ -s "$root/etc/os-release" ] || { echo "no os-release"; fail=1; }
[ -x "$root/usr/lib/systemd/systemd" ] || { echo "no init"; fail=1; }
for f in grub.cfg bootargs.cfg; do [ -f "$root/etc/elemental/$f" ] || { echo "no /etc/elemental/$f"; fail=1; }; done
[ -e "$root/usr/bin/grub-editenv" ] || { echo "no grub-editenv"; fail=1; }
if [ "$fail" -eq 0 ]; then echo BOOTABLE; else echo "NOT BOOTABLE"; fi
exit "$fail"
