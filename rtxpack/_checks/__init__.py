"""What runs where: ``Target`` (a machine), probing this machine, the rules (which take only a
``Target``), decoding TensorRT-RTX's own validity answer, and ``check`` with its report."""
