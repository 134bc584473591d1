-- sealtune's `datasetType` of a create-task request (issue 22): how the dataset's rows become the
-- records counted and trained. NULL: 0G's three record shapes. Else the canonical JSON of
-- `protocol::dataset_type::DatasetType` (a named type as a JSON string, or a sorted object).
ALTER TABLE tasks ADD COLUMN dataset_type TEXT;
