-- Sends are stored by one prepared statement per batch (see handlers/messages.rs),
-- no longer by a PL/pgSQL function: measured on a batch of one, chat_send_batch spent
-- ~0.8 ms of PostgreSQL CPU (plan set-up of a large PL/pgSQL query on every call,
-- and re-planning whenever the plan cache chose custom plans), the single statement
-- ~0.33 ms. The functions of earlier versions are gone with it.
DROP FUNCTION IF EXISTS chat_send_batch(TEXT[], TEXT[], TEXT[], TEXT[], TEXT[], TEXT[], JSONB[], TEXT[], TIMESTAMPTZ[]);
DROP FUNCTION IF EXISTS chat_send_messages(TEXT[], TEXT[], TEXT[], TEXT[], TEXT[], TEXT[], JSONB[], TEXT[], TIMESTAMPTZ[]);
DROP FUNCTION IF EXISTS chat_send_message(TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, JSONB, TEXT, TIMESTAMPTZ);
