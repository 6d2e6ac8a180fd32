/** One parameterised SQL statement, serialisable so it can wait in an outbox before it runs on D1. */
export interface SqlStatement {
  sql: string;
  params: (string | number | null)[];
}
