"""kmatrix: the Linux kernel's configuration workflow for ML experiment matrices."""
