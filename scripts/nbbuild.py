"""Tiny helper used to write notebooks from Python lists of cells (authoring aid; the .ipynb files are the source)."""
import nbformat


def md(text):
    return nbformat.v4.new_markdown_cell(text.strip("\n"))


def code(text, tags=()):
    c = nbformat.v4.new_code_cell(text.strip("\n"))
    if tags:
        c.metadata["tags"] = list(tags)
    return c


def write(path, cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = cells
    nb.metadata["kernelspec"] = {"name": "fl-workbook", "display_name": "Python (FL workbook)", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nbformat.write(nb, path)
