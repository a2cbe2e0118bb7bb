"""DICOM: PS3.15 de-identification, 2D readers and canonical form."""
