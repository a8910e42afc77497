"""Deployment: export formats (SavedModel, TFLite, Keras, ONNX) and prediction from a run or an export."""
