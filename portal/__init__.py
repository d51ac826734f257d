"""The requester portal: copies of data by a safe link, the request form, the status page, and
the manual-task page of fulfilment (an adapter: it depends on the core, never on the console)."""
