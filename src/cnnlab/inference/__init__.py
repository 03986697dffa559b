"""Using a trained run: `cnnlab predict` and the Python API behind `cnnlab.load(RUN)`.

- inputs: turn the PATH arguments (files, folders, globs) into an ordered list of photos;
  light, so the CLI can check its arguments before Keras is imported.
- classifier: the run's model with its preprocessing and threshold (`load`, `Classifier`,
  `Prediction`), streaming predictions batch by batch.
- run_export: the run's own ONNX export (RUN/best.onnx), made once and run by ONNX Runtime,
  so that predicting needs no Keras (`engine='onnx'`, the command's default when it can).
- export, export_formats, savedmodel: `cnnlab export` and its parity check.
- writers: table, CSV and JSON rows written as the predictions arrive.
"""
