"""L2SNet training: the two networks, their losses, data pipeline and ``l2s-train``.

Installed as ``l2s_training`` (this folder is mapped by setuptools ``package-dir``, so no
generic ``training`` name lands in site-packages). Needs the ``train`` extra (torch, timm).
"""
