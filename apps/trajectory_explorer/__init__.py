"""The trajectory explorer: pick trained runs and a protein, turn it about any axis and
watch where its embedding goes (CARE next to SimCLR), in a browser.

    protein-care app --runs runs/care runs/simclr --store stores/pdb

Layers: :mod:`.data` (runs, store and an LRU cache of embeddings over the library, with
:mod:`.uploads` kept per browser tab, :mod:`.budget` bounding encoder batches and
:mod:`protein_care.provenance` comparing each run's training store), :mod:`.figures` (plotly figures), :mod:`.views` (what each control
produces, as plain functions), :mod:`.layout` (the page), :mod:`.callbacks` (thin Dash
wrappers over :mod:`.views`), :mod:`.server` (the app and its HTTP server). The app
holds no model or geometry code: embeddings, rotations, projections and parsing are
:mod:`protein_care` and :mod:`data_pipeline` calls.
"""
