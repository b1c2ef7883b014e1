"""The ``scene4d export`` and ``scene4d import`` jobs: scene folders <-> files other tools read.

* :mod:`.job`       — picks times, applies the frame change, writes the file and ``OUT.export.json``.
* one small unit per format — :mod:`.ply` (also per frame for ply-sequence), :mod:`.splat`,
  :mod:`.spz`, :mod:`.glb`, :mod:`.splatv` (fitted over time), :mod:`.mesh` (TSDF fusion):
  suffix, frame on disk, write, read back; :mod:`.errors` measures what a file lost.
* :mod:`.importer`  — a splat file -> a static scene folder that render/export accept.
* :mod:`.cli`       — the two command functions registered in :mod:`scene4d.cli`.

Codecs and frame geometry live in :mod:`scene4d.formats`; this package only reads scenes through
``scene4d.cli.load_scene`` / ``scene.at(t)`` and ``scene.json``.
"""
