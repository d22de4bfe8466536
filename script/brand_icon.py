"""Draw custom_components/smartserver/brand/icon.png (256x256): a server with a power symbol."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

TARGET = Path(__file__).resolve().parents[1] / "custom_components" / "smartserver" / "brand" / "icon.png"


def draw(size: int = 256) -> Image.Image:
    """The icon: a rounded server case, two drive bays and a power symbol."""
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    pen = ImageDraw.Draw(image)
    pen.rounded_rectangle((24, 40, 232, 216), radius=28, fill=(3, 169, 244, 255))
    for top in (64, 104):
        pen.rounded_rectangle((48, top, 160, top + 24), radius=6, fill=(255, 255, 255, 220))
    pen.arc((150, 130, 214, 194), start=-60, end=240, fill=(255, 255, 255, 255), width=10)
    pen.line((182, 122, 182, 160), fill=(255, 255, 255, 255), width=10)
    return image


if __name__ == "__main__":
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    draw().save(TARGET)
