"""Object detectors: the output contract, decoders of raw heads, cvaudit's NMS and the letterbox it undoes."""
