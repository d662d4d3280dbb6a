"""The bundled sample: a synthetic city imaged by synthetic satellites on several dates.

``generate.generate_sample(out_dir, seed)`` writes ``sample_aoi/`` (views as GeoTIFF + RPC, truth
DSM, scene description, truth renders); see ``sample_aoi/README.md``. Modules: ``city`` (layout),
``render`` (exact ray casting), ``shading`` (materials, light, shadows), ``solar`` (sun
position), ``satellite`` (acquisition plan, true cameras, RPC fit, sensor), ``generate``.
Nothing heavy is imported here.
"""
