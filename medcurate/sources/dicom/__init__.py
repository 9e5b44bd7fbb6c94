"""DICOM source: reading clinical DICOM files (pixels, headers) into sample records."""
