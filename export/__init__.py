"""l2s-export: weights directory -> ONNX (fp32 + fp16) -> TensorRT plans + manifest.

Installed as ``l2s_export`` (this folder is mapped by setuptools ``package-dir``, so no
generic ``export`` name lands in site-packages). Depends on ``l2s_training`` for the
networks; the runtime ``l2s_engine`` never imports it.
"""
