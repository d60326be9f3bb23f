//! One Parquet file being written, faster than `ArrowWriter` on its own:
//! each row group's columns are encoded in parallel (on rayon's pool), and
//! row groups of another file with the same schema can be copied in without
//! decoding them (what compaction does with row groups already large).

use std::fs::File;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parquet::arrow::arrow_writer::{compute_leaves, ArrowColumnChunk, ArrowRowGroupWriterFactory};
use parquet::arrow::ArrowWriter;
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::ParquetMetaData;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use rayon::prelude::*;

/// A Parquet file open for writing.
pub(crate) struct ParquetSink {
    writer: SerializedFileWriter<File>,
    factory: ArrowRowGroupWriterFactory,
    schema: SchemaRef,
    row_group_rows: usize,
    /// Rows waiting for a full row group.
    pending: Vec<RecordBatch>,
    pending_rows: usize,
    row_groups: usize,
}

impl std::fmt::Debug for ParquetSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetSink")
            .field("row_groups", &self.row_groups)
            .field("pending_rows", &self.pending_rows)
            .finish()
    }
}

impl ParquetSink {
    /// Starts a file of `schema` rows (the Arrow schema is embedded, as
    /// `ArrowWriter` does, so readers get the column descriptions back).
    pub(crate) fn create(
        file: File,
        schema: SchemaRef,
        props: &WriterProperties,
    ) -> Result<ParquetSink> {
        let row_group_rows = props.max_row_group_row_count().unwrap_or(1 << 20).max(1);
        let (writer, factory) =
            ArrowWriter::try_new(file, Arc::clone(&schema), Some(props.clone()))?
                .into_serialized_writer()?;
        Ok(ParquetSink {
            writer,
            factory,
            schema,
            row_group_rows,
            pending: Vec::new(),
            pending_rows: 0,
            row_groups: 0,
        })
    }

    /// Adds rows; full row groups are encoded as they fill.
    pub(crate) fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.schema().fields() != self.schema.fields() {
            return Err(ParquetError::General(
                "a batch of another schema was written to this file".into(),
            ));
        }
        let mut offset = 0;
        while offset < batch.num_rows() {
            let take = (self.row_group_rows - self.pending_rows).min(batch.num_rows() - offset);
            self.pending.push(batch.slice(offset, take));
            self.pending_rows += take;
            offset += take;
            if self.pending_rows == self.row_group_rows {
                self.flush()?;
            }
        }
        Ok(())
    }

    /// Encodes the pending rows as one row group, a column per task.
    fn flush(&mut self) -> Result<()> {
        if self.pending_rows == 0 {
            return Ok(());
        }
        let writers = self.factory.create_column_writers(self.row_groups)?;
        if writers.len() != self.schema.fields().len() {
            // Our streams are flat: one leaf per field. A nested column would
            // need its leaves routed to the right writers.
            return Err(ParquetError::General(
                "nested columns are not supported by the parallel encoder".into(),
            ));
        }
        let pending = std::mem::take(&mut self.pending);
        let chunks: Vec<ArrowColumnChunk> = writers
            .into_par_iter()
            .enumerate()
            .map(|(i, mut writer)| {
                let field = self.schema.field(i);
                for batch in &pending {
                    for leaf in compute_leaves(field, batch.column(i))? {
                        writer.write(&leaf)?;
                    }
                }
                writer.close()
            })
            .collect::<Result<_>>()?;
        let mut row_group = self.writer.next_row_group()?;
        for chunk in chunks {
            chunk.append_to_row_group(&mut row_group)?;
        }
        row_group.close()?;
        self.pending_rows = 0;
        self.row_groups += 1;
        Ok(())
    }

    /// Copies row group `index` of `input` (whose metadata is `meta`, and
    /// whose schema must be this file's) without decoding it.
    pub(crate) fn copy_row_group(
        &mut self,
        input: &File,
        meta: &ParquetMetaData,
        index: usize,
    ) -> Result<()> {
        if meta.file_metadata().schema_descr().root_schema()
            != self.writer.schema_descr().root_schema()
        {
            return Err(ParquetError::General(
                "a row group of another schema was copied into this file".into(),
            ));
        }
        // Rows written before stay before: flush them into their own group.
        self.flush()?;
        let group = meta.row_group(index);
        let mut row_group = self.writer.next_row_group()?;
        for column in group.columns() {
            row_group.append_column(
                input,
                ColumnCloseResult {
                    bytes_written: column.compressed_size() as u64,
                    rows_written: group.num_rows() as u64,
                    metadata: column.clone(),
                    bloom_filter: None,
                    column_index: None,
                    offset_index: None,
                },
            )?;
        }
        row_group.close()?;
        self.row_groups += 1;
        Ok(())
    }

    /// Writes what is pending and the footer; returns the file, not yet
    /// synced.
    pub(crate) fn finish(mut self) -> Result<File> {
        self.flush()?;
        self.writer.into_inner()
    }
}
