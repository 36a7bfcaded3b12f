"""The RetinaNet network: backbone adapter, FPN and the shared class/box subnets (pure nn.Modules)."""
