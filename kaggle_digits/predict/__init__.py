"""Predicting your own images: MNIST-style preprocessing and the predictor of a trial or an ensemble
(predictor), and the local drawing page (serve)."""
