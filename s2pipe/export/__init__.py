"""``export``: checkpoints as ONNX models, fp32 or int8 (calibrated on training tiles, checked
on validation tiles). It sits above ``prediction`` and ``training``, whose window model and
tile reader it uses; nothing below imports it."""
