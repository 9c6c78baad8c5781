"""The page-cache state every benchmarked binary starts from."""
import os


def from_disk(path):
    """Drops `path`'s pages from the page cache and reads it back, so that
    each runtime's binary is measured as read from disk (as after a boot or
    a package install), whatever state the page cache held it in.

    A binary just linked is not in that state: lld writes its output
    through a shared mapping, which leaves it in the page cache as single
    4 KiB pages (2,060 of 2,076 in a fresh build), where a read from disk
    gives mostly large folios. Every exec then maps the single pages one by
    one: measured on ocirun's `run`, 247 page faults against 240 and 2-6%
    more CPU, a difference the runtime being compared (an installed file)
    does not have (docs/performance.md, step 21)."""
    os.sync()  # only clean pages are dropped
    fd = os.open(os.path.realpath(path), os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        while os.read(fd, 1 << 20):
            pass
    finally:
        os.close(fd)
