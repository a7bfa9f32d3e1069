"""A synthetic shop realistic enough that a model that works on it would work in a real one.

(Calibration targets are filled in below once measured.)
"""

from recommndr.data.synthetic.generator import GenerationSummary, generate

__all__ = ["GenerationSummary", "generate"]
