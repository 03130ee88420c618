"""Mesh export: marching cubes, cleanup, decimation, UV unwrapping, texture baking, files and a check.

Each step is one module; :func:`psdkit.mesh.pipeline.export_mesh` runs them as an
:class:`~psdkit.mesh.config.MeshExportConfig` says. No CUDA extension is involved: PyMCubes, fast-simplification
and xatlas are CPU libraries, and the rasterizers are plain torch.
"""
