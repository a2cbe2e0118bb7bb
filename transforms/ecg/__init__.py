"""ECG: readers, canonical form, de-identification and validation."""
