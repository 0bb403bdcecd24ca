"""The paper's maps of the trainability boundary (the fractal workload, fractal/workload.py).

fractal.paper      configuration -> cells: images, zoom centres, frames
fractal.dimension  the box-counting estimator (llmmap's maps use it too)
"""
