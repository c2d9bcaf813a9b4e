"""Photos of digits on paper, generated from real MNIST digits: the same page under even and uneven light.

A `Photo` fixes everything about one picture (where the digit sits, its size and tilt, ruled lines,
camera noise, JPEG quality) except the light, so `render(photo, even=True)` and `render(photo)` differ
only in the lighting: a gradient of any direction and strength and a soft shadow. Every choice is drawn
from a seeded generator, so a set of photos is the same on every machine.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

PAPER = 0.92  # reflectance of white paper
INK = 0.12  # reflectance of a dark pen stroke


@dataclass(frozen=True)
class Photo:
    """One generated photo of one 28x28 MNIST digit (uint8, ink bright on 0) and how it was taken."""

    digit: np.ndarray
    label: int
    seed: int
    size: tuple[int, int]  # (height, width) of the photo in pixels
    digit_side: int  # the 28x28 field drawn this many pixels a side
    top_left: tuple[int, int]
    angle: float  # degrees the page is turned in the frame
    ruled: bool  # notebook paper: faint horizontal lines at a regular spacing
    line_gap: int
    line_darkness: float  # fraction of the paper's light a ruled line absorbs
    gradient_angle: float  # direction in which the light falls off (radians)
    gradient_strength: float  # fraction of the light lost from the lit side to the far side
    shadow: bool
    shadow_depth: float  # fraction of the light the shadow takes
    shadow_edge: tuple[float, float, float]  # the shadow's edge: a line (angle, offset) and its softness
    noise: float  # camera noise, standard deviation on a 0-1 scale
    jpeg_quality: int

    def describe(self) -> str:
        """One line: what the uneven-light version of this photo has."""
        parts = [f"gradient {self.gradient_strength:.2f} at {math.degrees(self.gradient_angle):.0f} deg"]
        if self.shadow:
            parts.append(f"shadow {self.shadow_depth:.2f}")
        if self.ruled:
            parts.append("ruled")
        parts.append(f"tilt {self.angle:+.1f} deg, noise {self.noise:.3f}, JPEG q{self.jpeg_quality}")
        return f"seed {self.seed}, digit {self.label}: " + ", ".join(parts)


def photo(digit: np.ndarray, label: int, seed: int) -> Photo:
    """Draw the settings of one photo of `digit` (uint8 (28, 28)) from `seed`."""
    rng = np.random.default_rng(seed)
    height = int(rng.integers(220, 400))
    width = int(rng.integers(220, 400))
    side = int(rng.uniform(0.55, 0.95) * min(height, width))
    top = int(rng.integers(0, height - side + 1))
    left = int(rng.integers(0, width - side + 1))
    return Photo(
        digit=digit,
        label=int(label),
        seed=seed,
        size=(height, width),
        digit_side=side,
        top_left=(top, left),
        angle=float(rng.uniform(-6, 6)),
        ruled=bool(rng.random() < 0.4),
        line_gap=int(rng.integers(25, 45)),
        line_darkness=float(rng.uniform(0.15, 0.35)),
        gradient_angle=float(rng.uniform(0, 2 * math.pi)),
        gradient_strength=float(rng.uniform(0.35, 0.7)),
        shadow=bool(rng.random() < 0.5),
        shadow_depth=float(rng.uniform(0.25, 0.5)),
        shadow_edge=(float(rng.uniform(0, 2 * math.pi)), float(rng.uniform(-0.3, 0.3)), float(rng.uniform(8, 30))),
        noise=float(rng.uniform(0.01, 0.035)),
        jpeg_quality=int(rng.integers(55, 90)),
    )


def reflectance(p: Photo) -> np.ndarray:
    """The page as float (h, w): PAPER where blank, INK where the pen was, ruled lines if any."""
    height, width = p.size
    page = np.full((height, width), PAPER, dtype=np.float32)
    if p.ruled:
        first = p.line_gap // 2
        for row in range(first, height, p.line_gap):
            page[row : row + 2] *= 1 - p.line_darkness
    # The digit drawn large: bicubic enlargement of MNIST's anti-aliased strokes gives a thick, soft pen.
    big = Image.fromarray(p.digit).resize((p.digit_side, p.digit_side), Image.Resampling.BICUBIC)
    ink = np.zeros((height, width), dtype=np.float32)
    top, left = p.top_left
    ink[top : top + p.digit_side, left : left + p.digit_side] = np.asarray(big, dtype=np.float32) / 255.0
    page = page * (1 - ink) + INK * ink
    if p.angle:
        turned = Image.fromarray(page, mode="F").rotate(p.angle, Image.Resampling.BILINEAR, fillcolor=PAPER)
        page = np.asarray(turned, dtype=np.float32)
    return page


def lighting(p: Photo) -> np.ndarray:
    """The light falling on the page, float (h, w) at most 1: a linear fall-off and an optional shadow."""
    height, width = p.size
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    rows, cols = rows / max(height - 1, 1) - 0.5, cols / max(width - 1, 1) - 0.5
    along = np.cos(p.gradient_angle) * cols + np.sin(p.gradient_angle) * rows
    along = (along - along.min()) / (along.max() - along.min())
    light = 1.0 - p.gradient_strength * along
    if p.shadow:
        angle, offset, softness = p.shadow_edge
        distance = (np.cos(angle) * cols + np.sin(angle) * rows - offset) * min(height, width)
        shade = ndimage.gaussian_filter((distance > 0).astype(np.float32), softness)
        light = light * (1 - p.shadow_depth * shade)
    return light


def render(p: Photo, even: bool = False) -> bytes:
    """The photo as JPEG bytes; `even` lights the page evenly (everything else the same)."""
    image = reflectance(p) * (1.0 if even else lighting(p))
    noise = np.random.default_rng(p.seed + 1).normal(0, p.noise, image.shape)
    pixels = np.clip(np.round((image + noise) * 255), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).convert("RGB").save(out, "JPEG", quality=p.jpeg_quality)
    return out.getvalue()


def photo_set(digits: np.ndarray, labels: np.ndarray, seed: int = 0) -> list[Photo]:
    """One photo per digit, each with its own seed drawn from `seed`."""
    seeds = np.random.default_rng(seed).integers(0, 2**31, len(digits))
    return [photo(d, int(y), int(s)) for d, y, s in zip(digits, labels, seeds)]
