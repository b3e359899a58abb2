"""The domain: what makes an image bootable (kernel, initrd, packages, profiles)."""
