"""What the tools that consume a bootable image would do with it, one module per tool.

Each function emulates one behaviour of one tool (which kernel Elemental v2 picks, which /boot
entry Elemental v1 takes, which kernel release Kairos settles on, where bootc looks) and returns
a `Pick`.  Rules ask these functions and never re-implement them, so two rules cannot disagree
about what a tool does.  Each tool's constants (patterns, prefixes, link limits) live in its
module and nowhere else.

    pick          the typed answer every emulation returns
    grub          GRUB's default bootargs and the `set kernel=`/`set initramfs=` overrides
    elemental_v2  elemental-toolkit v2 FindFile/resolveLink/FindKernel/FindInitrd (E1-E4)
    elemental_v1  elemental-cli v1 FindFileWithPrefix, shared by kairos-agent
    kairos        kairos-init K13 kernel release, AuroraBoot's ISO pick
    bootc         bootc's kernel/initramfs layout and `bootc container lint`
    switch_root   which init systemd's switch-root runs after the initrd
"""
