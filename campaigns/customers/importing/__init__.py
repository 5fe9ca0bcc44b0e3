"""Import customers, orders, events and the product catalogue from CSV or JSON Lines files.

The file is streamed: rows are read one at a time, validated, and collected into batches of
``batch_size`` valid rows; each batch is written in ONE transaction with a bulk upsert, so an
import of a million rows is a thousand commits, not a million, and memory stays flat.

Re-importing a file is safe: every kind is keyed (``customer_id``, ``order_id``, the event's
``event_id`` or content hash, the product's ``sku``), so a second run updates rows instead of duplicating them.

A row that fails validation is not an error: it is reported as a
:class:`~campaigns.customers.importing.report.RowError` (with its physical line number) in the
:class:`~campaigns.customers.importing.report.ImportReport`, and the valid rows around it are
still written. Only a file that cannot be processed at all (missing, unknown format, not
UTF-8, a CSV header without the required columns) raises
:class:`~campaigns.errors.DataImportError`.

The route of a file, one module per stage:

* :mod:`~campaigns.customers.importing.files`: ``import_file``, the entry (CLI, bench): opens
  the file, batches the rows, collects the report.
* :mod:`~campaigns.customers.importing.readers`: bytes to rows: UTF-8 lines with their
  numbers, CSV records, JSON Lines objects; size limits per row and header.
* :mod:`~campaigns.customers.importing.rows`: one row to one record, per kind (customers,
  orders, events), over the field parsers of :mod:`~campaigns.customers.importing.fields`.
* :mod:`~campaigns.customers.importing.upserts`: one batch of records to the database, in one
  transaction, retried in halves should the database refuse a row.
* :mod:`~campaigns.customers.importing.report`: what an import did.
* :mod:`~campaigns.customers.importing.products`: the catalogue's rows and batches (keyed by
  sku; a row that changes nothing is not written), and the skus order items name that the
  catalogue lacks (kept, and reported by the orders import).

Conventions shared by all kinds:

* An empty value (CSV ``""``, JSON ``""`` or ``null``) means "not given": on insert the field
  is NULL / the default, on update the stored value is kept. Imports therefore never erase
  data; a partial file (say ``customer_id,vip``) only touches the columns it has.
* Dates are ISO 8601 dates or datetimes; naive values are taken as UTC; everything is
  stored as aware UTC.
* ``rows_read == imported + len(rejected)``; blank lines are not rows.
* Values must be storable (:mod:`campaigns.config.jsonvalues`: finite numbers, integers within
  int64, no NUL, no lone surrogates, bounded nesting and size) and dates within
  ``fields.EARLIEST_DATE``..``fields.LATEST_DATE``; a row over ``readers.MAX_ROW_BYTES`` and a
  CSV header over ``readers.MAX_COLUMNS`` columns are refused. Messages name the field, never
  its value.
* Should the database still refuse a batch, it is retried in halves down to the single
  row, so only the refused row is rejected (its reason names the error class, never the
  SQL parameters, which hold emails and phone numbers).
"""
