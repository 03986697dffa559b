"""Using a trained run: `cnnlab predict` and the Python API behind `cnnlab.load(RUN)`.

- inputs: turn the PATH arguments (files, folders, globs) into an ordered list of photos;
  light, so the CLI can check its arguments before Keras is imported.
- classifier: the run's model with its preprocessing and threshold (`load`, `Classifier`,
  `Prediction`), streaming predictions batch by batch.
- writers: table, CSV and JSON rows written as the predictions arrive.
"""
