-- A task stopped during training (issue 23): why, as the customer sees it ("cancelled by the customer
-- during training", or the funds behind the fee retrieved during training). Set while the task is in
-- Training; the training lane stops the child, delivers nothing and settles the cancel's fee on chain
-- (the penalty share, through addDeliverable with an all-zero root and settleFees), then fails the task
-- with this reason. NULL: not stopped.
ALTER TABLE tasks ADD COLUMN cancelled TEXT;
