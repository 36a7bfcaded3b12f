"""The public Python API; import it from the top level (``retina_cli.load``, ``retina_cli.Result``).

detector.py: ``load`` and ``Detector`` (predict, val, export). results.py: ``Result``, one image's
detections. metrics.py: ``Metrics``, what ``Detector.val`` returns. inputs.py: the sources
``predict`` accepts. training.py: ``train``. See docs/API.md.
"""
