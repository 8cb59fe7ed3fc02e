"""The swap panel's person gallery: the persons a client may pick by id (never by path).

Either a folder given to ``serve --persons DIR`` — persons in our form (``NAME.png`` + ``NAME.pose.json`` +
``NAME.parsing.png``, see `imagexplore.synthesis.persons`), read and checked once at start (an unreadable person is
skipped with a line on stderr; a folder with none is refused) — or, by default, `GALLERY_SIZE` shapes-world persons
exported once with `export_persons` into the serve cache at the checkpoint's image size. The default persons come
from the world of seed `GALLERY_SEED`, not the world a shapes checkpoint was trained on (seed 0 by default), so
they are new bodies and outfits to the model.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from imagexplore.errors import UserError

GALLERY_SEED = 1
MAX_PERSONS = 200  # a larger --persons folder is cut to its first MAX_PERSONS persons (sorted by name)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass
class GalleryPerson:
    id: str
    name: str
    person: object  # imagexplore.synthesis.persons.Person
    png: bytes  # the image as PNG, served by GET /api/persons/{id}/image

    def info(self) -> dict:
        h, w = self.person.image.shape[:2]
        return {
            "id": self.id,
            "name": self.name,
            "url": f"/api/persons/{self.id}/image",
            "width": w,
            "height": h,
        }


class PersonGallery:
    def __init__(self, persons: list[GalleryPerson], source: str):
        self.persons = persons
        self.source = source
        self._by_id = {p.id: p for p in persons}

    def get(self, ident) -> GalleryPerson | None:
        return self._by_id.get(ident) if isinstance(ident, str) else None

    def __len__(self) -> int:
        return len(self.persons)

    # --------------------------------------------------------------------------------------------- sources
    @classmethod
    def from_folder(cls, folder, order: str, source: str | None = None) -> PersonGallery:
        """Every person of ``folder`` (our form, keypoint ``order``; not recursive), sorted by name."""
        from imagexplore.synthesis.persons import read_person

        folder = Path(folder)
        if not folder.is_dir():
            raise UserError(f"--persons {folder} is not a folder")
        images = sorted(
            p
            for p in folder.iterdir()
            if p.suffix.lower() in IMAGE_SUFFIXES
            and not p.name.endswith(".parsing.png")
            and p.with_name(p.stem + ".pose.json").is_file()
        )
        if len(images) > MAX_PERSONS:
            print(
                f"[serve] {folder}: {len(images)} persons; the swap panel shows the first {MAX_PERSONS}",
                file=sys.stderr,
            )
            images = images[:MAX_PERSONS]
        persons = []
        for path in images:
            try:
                person = read_person(path, order=order)
            except Exception as exc:  # noqa: BLE001 - one bad person must not hide the others; said once
                print(f"[serve] skipping person {path.name}: {str(exc).splitlines()[0]}", file=sys.stderr)
                continue
            persons.append(GalleryPerson(_ident(path), path.stem, person, _png(person.image)))
        if not persons:
            raise UserError(
                f"no usable person in {folder}: expected NAME.png with NAME.pose.json and NAME.parsing.png beside "
                f"it (keypoint order {order!r}; `imagexplore data export-persons` writes such a folder)"
            )
        return cls(persons, source or f"{folder.name}/ ({len(persons)} persons)")

    @classmethod
    def shapes(cls, cache: Path, size: int, count: int, seed: int = GALLERY_SEED) -> PersonGallery:
        """``count`` shapes-world persons at ``size`` px, exported once into ``cache`` (reused on later starts)."""
        from imagexplore.synthesis.persons import export_persons

        dest = Path(cache) / f"shapes_seed{seed}_size{size}_n{count}"
        if not (dest / "persons.json").is_file():
            tmp = dest.with_name(f"{dest.name}.tmp{os.getpid()}")
            shutil.rmtree(tmp, ignore_errors=True)
            export_persons(tmp, count, size=size, seed=seed)
            try:
                os.replace(tmp, dest)  # atomic: another server exporting at once leaves one complete folder
            except OSError:
                shutil.rmtree(tmp, ignore_errors=True)
                if not (dest / "persons.json").is_file():
                    raise
        return cls.from_folder(dest, "shapes", f"shapes world (seed {seed}, {size} px, {count} persons)")


def _ident(path: Path) -> str:
    return hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]


def _png(image) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image, "RGB").save(buf, format="PNG")
    return buf.getvalue()
