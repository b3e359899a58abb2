"""The virtual filesystem: tar records (`node.Entry`), the flattened tree, overlay rules."""
